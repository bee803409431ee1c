/// The C runtime library that every generated model includes: thread pool and kernels.
///
/// The sources are the `.c` files under `runtime/`, embedded into the compiler at build time, so the
/// `lamina` binary needs no resource files at run time.
enum CRuntimeSources {
  /// The thread pool (`lamina_pool_*`); comes first, the kernels use it.
  static var pool: String { String(decoding: PackageResources.lamina_pool_c, as: UTF8.self) }
  /// Matrix multiplication (`lamina_sgemm`, `lamina_dgemm`) with epilogue hooks; needs `pool` before it.
  static var gemm: String { String(decoding: PackageResources.lamina_gemm_c, as: UTF8.self) }
}
