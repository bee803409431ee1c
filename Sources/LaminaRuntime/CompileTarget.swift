import Foundation

/// The CPUs a library is compiled for (`--target`).
///
/// - `portable` (the default): any x86-64 CPU with AVX2 and FMA (x86-64-v3); the kernels and the GEMM
///   are compiled twice, for AVX2 and for AVX-512, and a context runs the widest code its CPU has.
/// - `x86-64-v3`: AVX2 only, no AVX-512 instruction anywhere.
/// - `x86-64-v4`: requires AVX-512 (F, BW, CD, DQ, VL).
/// - `native`: exactly this CPU (`-march=native`); the cache key holds the features it resolved to.
/// - `generic`: no instruction set beyond the architecture's baseline (`-march=x86-64` on x86-64, the
///   compiler's default elsewhere), so the same C builds on an ARM machine.
///
/// A library refuses to create a context on a CPU that lacks what it needs (`lamina_create` checks,
/// with code compiled for the baseline), naming the missing features.
public enum CompileTarget: String, CaseIterable, Sendable, CustomStringConvertible {
  case portable
  case native
  case x86_64_v3 = "x86-64-v3"
  case x86_64_v4 = "x86-64-v4"
  case generic

  public var description: String { rawValue }

  /// `portable` on x86-64; `generic` elsewhere (an ARM machine), where the x86 targets do not apply.
  public static var standard: CompileTarget { hostIsX86 ? .portable : .generic }

  /// One compilation of the kernels and the GEMM, for one instruction set.
  public struct InstructionSet: Sendable, Equatable {
    /// The suffix of its symbols (`lamina_gemm_f32_avx512`, `lamina_entry_points_avx512`).
    public var suffix: String
    /// What `lamina_instruction_set` reports.
    public var name: String
    /// The compiler flags that select it.
    public var flags: [String]
    /// The CPU features it needs, as `lamina_cpu.c` names them (or the x86-64 levels).
    public var requires: String
  }

  /// Whether the compiler runs on (and so compiles for) an x86-64 machine.
  public static var hostIsX86: Bool {
    #if arch(x86_64)
      return true
    #else
      return false
    #endif
  }

  /// The instruction sets the kernels are compiled for, widest first: the last is the one the
  /// library requires, the others are used where the CPU has them.
  public func instructionSets(compiler: CCompiler) throws -> [InstructionSet] {
    let avx2 = InstructionSet(
      suffix: "avx2", name: "x86-64-v3", flags: ["-march=x86-64-v3"], requires: "x86-64-v3")
    // clang prefers 256-bit vectors for x86-64-v4 unless told otherwise; gcc uses 512 already.
    let avx512 = InstructionSet(
      suffix: "avx512", name: "x86-64-v4",
      flags: ["-march=x86-64-v4", "-mprefer-vector-width=512"], requires: "x86-64-v4")
    switch self {
    case .portable, .x86_64_v3, .x86_64_v4:
      guard CompileTarget.hostIsX86 else {
        throw CompilerError(
          message:
            "--target \(rawValue) is for x86-64 machines; use --target generic or native here",
          compilerOutput: "", sourceExcerpt: "")
      }
      switch self {
      case .portable: return [avx512, avx2]
      case .x86_64_v3: return [avx2]
      default: return [avx512]
      }
    case .native:
      return [
        InstructionSet(
          suffix: "native", name: "native", flags: ["-march=native"],
          requires: try compiler.nativeFeatures().joined(separator: " "))
      ]
    case .generic:
      return [
        InstructionSet(
          suffix: "generic", name: "generic", flags: CompileTarget.baselineFlags, requires: "")
      ]
    }
  }

  /// Flags for code that must run on any CPU of the architecture: the CPU check and the exported
  /// C interface that calls it.
  public static var baselineFlags: [String] { hostIsX86 ? ["-march=x86-64"] : [] }
}
