/// The C runtime library every compiled model links, and the headers its `model.c` includes.
///
/// The sources are the files under `runtime/`, embedded into the compiler at build time, so the
/// `lamina` binary needs no resource files at run time. A build writes them next to the model's C
/// and compiles each runtime translation unit once per compiler and flags (see `LibraryCache`):
/// - `lamina_pool.c`: the thread pool;
/// - `lamina_gemm.c`: the GEMM, once per element type and instruction set;
/// - `lamina_conv.c`: the convolutions (with `lamina_winograd.h`), likewise, for the models that
///   have one;
/// - `lamina_cpu.c`: the CPU features, for the baseline of the architecture;
/// - `lamina_model_setup.c`: the exported C interface of a model library;
/// - `lamina_philox.h`: the Philox-4x32-10 generator that dropout draws from.
public enum CRuntimeSources {
  /// Every runtime file by name: the translation units and the headers they and `model.c` include.
  public static var files: [String: String] {
    [
      "lamina_runtime.h": text(PackageResources.lamina_runtime_h),
      "lamina_interface.h": interface,
      "lamina_model.h": text(PackageResources.lamina_model_h),
      "lamina_math.h": text(PackageResources.lamina_math_h),
      "lamina_conv.h": text(PackageResources.lamina_conv_h),
      "lamina_conv.c": text(PackageResources.lamina_conv_c),
      "lamina_winograd.h": text(PackageResources.lamina_winograd_h),
      "lamina_pool.c": text(PackageResources.lamina_pool_c),
      "lamina_gemm.c": text(PackageResources.lamina_gemm_c),
      "lamina_cpu.c": text(PackageResources.lamina_cpu_c),
      "lamina_model_setup.c": text(PackageResources.lamina_model_setup_c),
      "lamina_philox.h": text(PackageResources.lamina_philox_h),
    ]
  }

  /// The headers, which every translation unit may include.
  public static var headers: [String: String] { files.filter { $0.key.hasSuffix(".h") } }

  /// The exported C interface of a model library (`lamina_interface.h`), pasted into the header
  /// `lamina compile` writes for C programs.
  public static var interface: String { text(PackageResources.lamina_interface_h) }

  private static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
}
