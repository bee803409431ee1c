import Foundation
import Lamina

/// Helpers for comparing tensors and finding compilers in tests.
public enum TestData {
  /// Random inputs the model accepts (see `SampleInputs`).
  public static func inputs(for graph: Graph, symbols: [String: Int], seed: UInt64) -> [String:
    Tensor]
  {
    SampleInputs.make(for: graph, symbols: symbols, seed: seed)
  }

  /// nil when every element of `actual` is within `rtol * |expected| + atol` of `expected`; otherwise a
  /// description of the worst element. NaN matches only NaN.
  public static func mismatch(_ actual: Tensor, _ expected: Tensor, rtol: Double, atol: Double)
    -> String?
  {
    guard actual.shape == expected.shape, actual.dtype == expected.dtype else {
      return "got \(actual.typeDescription), expected \(expected.typeDescription)"
    }
    let a = actual.doubles()
    let e = expected.doubles()
    var worst: (index: Int, excess: Double)?
    // Indexes into buffers: debug builds (the tests) check every element of large tensors here.
    a.withUnsafeBufferPointer { a in
      e.withUnsafeBufferPointer { e in
        var index = 0
        while index < a.count {
          defer { index += 1 }
          if a[index] == e[index] || (a[index].isNaN && e[index].isNaN) { continue }
          let allowed = rtol * abs(e[index]) + atol
          let difference = abs(a[index] - e[index])
          if !(difference <= allowed) {
            let excess = difference.isNaN ? .infinity : difference / allowed
            if worst == nil || excess > worst!.excess { worst = (index, excess) }
          }
        }
      }
    }
    guard let worst else { return nil }
    return
      "element \(worst.index): got \(a[worst.index]), expected \(e[worst.index]) (\(String(format: "%.1f", worst.excess))x the tolerance)"
  }

  /// The largest magnitude among the finite elements of `tensor` (`.map(abs).filter(\.isFinite).max()`
  /// without a generic call per element in debug builds); nil when no element is finite.
  public static func largestFiniteMagnitude(_ tensor: Tensor) -> Double? {
    var largest: Double?
    tensor.doubles().withUnsafeBufferPointer { values in
      var index = 0
      while index < values.count {
        let magnitude = abs(values[index])
        if magnitude.isFinite, largest == nil || magnitude > largest! { largest = magnitude }
        index += 1
      }
    }
    return largest
  }

  /// The C compilers on this machine that Lamina can use.
  public static var compilers: [String] {
    ["gcc", "clang"].filter { name in
      (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
        FileManager.default.isExecutableFile(atPath: "\($0)/\(name)")
      }
    }
  }
}
