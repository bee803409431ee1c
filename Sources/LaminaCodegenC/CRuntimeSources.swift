/// The C runtime library every compiled model links: thread pool and GEMM.
///
/// The sources are the files under `runtime/`, embedded into the compiler at build time, so the
/// `lamina` binary needs no resource files at run time.
public enum CRuntimeSources {
  /// The runtime's translation unit: `lamina_pool.c` then `lamina_gemm.c`.
  public static var implementation: String {
    String(decoding: PackageResources.lamina_pool_c, as: UTF8.self) + "\n"
      + String(decoding: PackageResources.lamina_gemm_c, as: UTF8.self)
  }

  /// The declarations generated model code needs (`lamina_runtime.h`), pasted into each model.
  public static var declarations: String {
    String(decoding: PackageResources.lamina_runtime_h, as: UTF8.self)
  }
}
