import Foundation
import Lamina

/// Helpers for comparing tensors and finding compilers in tests.
public enum TestData {
  /// For `forward(_:dims:)`: the `symbols` no given input determines (a GAN's batch, which only
  /// its data sets, when forward reads nothing but its own noise).
  public static func freeDimensions(
    _ symbols: [String: Int], given inputs: [String: Tensor], signature: ModelSignature
  ) -> [String: Int] {
    let mentioned = Set(
      signature.inputs.filter { inputs[$0.name] != nil }.flatMap { entry in
        entry.shape.flatMap { $0.split(separator: "*").map(String.init) }
      })
    return symbols.filter { !mentioned.contains($0.key) && signature.symbols.contains($0.key) }
  }

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

  /// The tolerance compiled results are held to against the interpreter: a few f32 or f64 rounding
  /// steps relative to each element, plus an absolute term scaled by the largest finite magnitude of
  /// the reference; integers must match exactly.
  public static func compiledTolerance(for reference: Tensor) -> (rtol: Double, atol: Double) {
    let scale = max(largestFiniteMagnitude(reference) ?? 1, 1)
    switch reference.dtype {
    case .f32: return (1e-5, 1e-6 * scale)
    case .f64: return (1e-12, 1e-14 * scale)
    case .i32, .i64: return (0, 0)
    }
  }

  /// Runs `evaluate` of a compiled model and the interpreter on the same random inputs at each batch
  /// size (every symbolic dimension set to it) and returns one message per output or loss that
  /// differs beyond `compiledTolerance` (or beyond `relativeTolerance`, with a tenth of it times the
  /// largest magnitude as the absolute term: a Winograd convolution rounds differently), or whose
  /// name is missing on either side; empty when all match.
  public static func compiledMismatches(
    _ model: Model, _ compiled: CompiledModel, parameters: [String: Tensor], batches: [Int],
    relativeTolerance: Double? = nil
  ) throws -> [String] {
    var problems: [String] = []
    for batch in batches {
      let symbols = Dictionary(uniqueKeysWithValues: compiled.signature.symbols.map { ($0, batch) })
      let inputs = inputs(for: model.graph, symbols: symbols, seed: UInt64(batch))
      let (outputs, losses) = try compiled.evaluate(inputs)
      let names = model.graph.outputs.map(\.name) + model.graph.losses.map(\.name)
      let expected = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
      let actual = outputs.merging(losses, uniquingKeysWith: { a, _ in a })
      problems += compiledMismatches(
        actual, expected, names: names, relativeTolerance: relativeTolerance
      ).map { "batch \(batch), \($0)" }
    }
    return problems
  }

  /// One message ("name: problem") per named value whose compiled result differs from the
  /// interpreter's beyond `compiledTolerance`, or that is missing on either side.
  public static func compiledMismatches(
    _ actual: [String: Tensor], _ expected: [String: Tensor], names: [String],
    relativeTolerance: Double? = nil
  ) -> [String] {
    names.compactMap { name in
      guard let tensor = actual[name], let reference = expected[name] else {
        return "\(name): missing from the compiled or interpreted results"
      }
      var (rtol, atol) = compiledTolerance(for: reference)
      if let relativeTolerance {
        rtol = relativeTolerance
        atol = relativeTolerance / 10 * max(largestFiniteMagnitude(reference) ?? 1, 1)
      }
      return mismatch(tensor, reference, rtol: rtol, atol: atol).map { "\(name): \($0)" }
    }
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
