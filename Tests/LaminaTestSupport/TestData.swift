import Foundation
import Lamina

/// Random inputs for a model, valid for its ops: integer inputs used as class labels stay within the
/// classes; float inputs whose name starts with `positive` are positive (for log and sqrt).
public enum TestData {
  public static func inputs(for graph: Graph, symbols: [String: Int], seed: UInt64) -> [String: Tensor] {
    var generator = SeededGenerator(seed: seed)
    var result: [String: Tensor] = [:]
    for input in graph.inputs {
      let info = graph[input.value]
      let type = graph.type(of: input.value)
      let shape = type.concreteShape(symbols)!
      let count = shape.reduce(1, *)
      let values: [Double]
      if type.dtype.isInteger {
        let classes = labelClasses(of: input.value, in: graph) ?? 5
        values = (0..<count).map { _ in Double(generator.next() % UInt64(classes)) }
      } else if info.name.hasPrefix("positive") {
        values = (0..<count).map { _ in abs(generator.nextNormal()) + 0.1 }
      } else if info.name.hasPrefix("target") || info.name.hasPrefix("ones") || info.name.hasPrefix("zeros") {
        values = (0..<count).map { _ in generator.nextUnit() }
      } else {
        values = (0..<count).map { _ in generator.nextNormal() }
      }
      result[info.name] = Tensor(dtype: type.dtype, shape: shape, doubles: values)
    }
    return result
  }

  /// The class count when `value` is the labels operand of a cross_entropy node.
  static func labelClasses(of value: ValueID, in graph: Graph) -> Int? {
    for node in graph.nodes where node.op == "cross_entropy" && node.operands[1] == value {
      return graph.type(of: node.operands[0]).shape[1].staticValue
    }
    return nil
  }

  /// nil when every element of `actual` is within `rtol * |expected| + atol` of `expected`; otherwise a
  /// description of the worst element. NaN matches only NaN.
  public static func mismatch(_ actual: Tensor, _ expected: Tensor, rtol: Double, atol: Double) -> String? {
    guard actual.shape == expected.shape, actual.dtype == expected.dtype else {
      return "got \(actual.typeDescription), expected \(expected.typeDescription)"
    }
    let a = actual.doubles()
    let e = expected.doubles()
    var worst: (index: Int, excess: Double)?
    for index in a.indices {
      if a[index].isNaN && e[index].isNaN { continue }
      let allowed = rtol * abs(e[index]) + atol
      let difference = abs(a[index] - e[index])
      if !(difference <= allowed) {
        let excess = difference.isNaN ? .infinity : difference / allowed
        if worst == nil || excess > worst!.excess { worst = (index, excess) }
      }
    }
    guard let worst else { return nil }
    return "element \(worst.index): got \(a[worst.index]), expected \(e[worst.index]) (\(String(format: "%.1f", worst.excess))x the tolerance)"
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
