import Foundation
import Lamina
import LaminaIR
import LaminaPasses
import LaminaTestSupport
import Testing

/// Random well-typed op graphs, compiled against the interpreter: elementwise, broadcasting,
/// reduction, matmul and shape ops over f32, f64, i32 and i64, with integers drawn from their limits
/// (min, max, -1, 0) as well as small values. A fixed seed keeps each run the same graphs; every
/// graph goes into one IR graph so the C is compiled once.
@Suite("Random differential")
struct RandomDifferentialTests {
  /// A small deterministic generator (SplitMix64), so the graphs do not depend on the platform.
  struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    mutating func int(_ range: ClosedRange<Int>) -> Int {
      range.lowerBound + Int(next() % UInt64(range.count))
    }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
  }

  struct Value {
    var name: String
    var dtype: DType
    var shape: [Int]
    /// An input, not computed: casts from floats read only these, so the value cast is the same
    /// bits compiled and interpreted (a float computed a few ulps apart can truncate differently).
    var isInput: Bool
  }

  /// Builds the IR of many small graphs side by side, and their inputs.
  struct Generator {
    var random: Random
    var lines: [String] = []
    var outputs: [(name: String, value: String)] = []
    var inputs: [String: Tensor] = [:]
    var counter = 0

    static let dtypes: [DType] = [.f32, .f64, .i32, .i64]

    mutating func fresh(_ prefix: String) -> String {
      counter += 1
      return "\(prefix)_\(counter)"
    }

    mutating func integer(_ dtype: DType) -> Int64 {
      let limits: [Int64] =
        dtype == .i32
        ? [Int64(Int32.min), Int64(Int32.min) + 1, Int64(Int32.max), Int64(Int32.max) - 1]
        : [Int64.min, Int64.min + 1, Int64.max, Int64.max - 1, Int64(Int32.max) + 1]
      if random.chance(35) { return random.pick(limits + [-1, 0, 1]) }
      return Int64(random.int(-9...9))
    }

    mutating func input(_ graph: Int, _ dtype: DType, _ shape: [Int]) -> Value {
      let name = fresh("g\(graph)_in")
      lines.append("  input %\(name) : \(dtype)[\(shape.map(String.init).joined(separator: ", "))]")
      let count = shape.reduce(1, *)
      switch dtype {
      case .f32:
        inputs[name] = Tensor(
          shape: shape, scalars: (0..<count).map { _ in Float(random.unit() * 8 - 4) })
      case .f64:
        inputs[name] = Tensor(shape: shape, scalars: (0..<count).map { _ in random.unit() * 8 - 4 })
      case .i32:
        inputs[name] = Tensor(
          shape: shape, scalars: (0..<count).map { _ in Int32(truncatingIfNeeded: integer(.i32)) })
      case .i64:
        inputs[name] = Tensor(shape: shape, scalars: (0..<count).map { _ in integer(.i64) })
      }
      return Value(name: name, dtype: dtype, shape: shape, isInput: true)
    }

    mutating func node(_ graph: Int, _ text: String, _ dtype: DType, _ shape: [Int]) -> Value {
      let name = fresh("g\(graph)_v")
      lines.append("  %\(name) = \(text)")
      return Value(name: name, dtype: dtype, shape: shape, isInput: false)
    }

    static func broadcastable(_ a: [Int], _ b: [Int]) -> Bool {
      zip(a.reversed(), b.reversed()).allSatisfy { $0 == $1 || $0 == 1 || $1 == 1 }
    }

    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int] {
      let rank = Swift.max(a.count, b.count)
      let a = Array(repeating: 1, count: rank - a.count) + a
      let b = Array(repeating: 1, count: rank - b.count) + b
      return zip(a, b).map { Swift.max($0, $1) }
    }

    static func list(_ values: [Int]) -> String {
      "[\(values.map(String.init).joined(separator: ", "))]"
    }

    /// One graph: two or three inputs of one dtype, then a few random ops over the values so far.
    mutating func graph(_ index: Int) {
      let dtype = random.pick(Self.dtypes)
      let rank = random.int(1...3)
      let shape = (0..<rank).map { _ in random.int(1...4) }
      var pool = [input(index, dtype, shape)]
      // A second operand that broadcasts: some dimensions 1, maybe fewer axes.
      var other = shape.map { random.chance(30) ? 1 : $0 }
      if other.count > 1, random.chance(30) { other.removeFirst() }
      pool.append(input(index, dtype, other))
      if random.chance(50) { pool.append(input(index, random.pick(Self.dtypes), shape)) }
      for _ in 0..<random.int(3...7) {
        if let value = step(index, pool) { pool.append(value) }
      }
      let last = pool[pool.count - 1]
      outputs.append(("g\(index)_y", last.name))
      if pool.count > 4, random.chance(50) {
        outputs.append(("g\(index)_z", pool[pool.count - 2].name))
      }
    }

    /// One random op on values from `pool`; nil when the pick does not apply (retried by the caller's
    /// next step).
    mutating func step(_ graph: Int, _ pool: [Value]) -> Value? {
      let a = random.pick(pool)
      let isFloat = a.dtype.isFloatingPoint
      switch random.int(0...9) {
      case 0, 1, 2:
        let partners = pool.filter { $0.dtype == a.dtype && Self.broadcastable($0.shape, a.shape) }
        let b = random.pick(partners)
        let ops = ["add", "sub", "mul", "div", "maximum", "minimum", "greater_equal"]
        var op = random.pick(ops)
        // Float division by values near 0 amplifies rounding differences past any tolerance.
        if isFloat, op == "div" { op = "mul" }
        let (left, right) = random.chance(50) ? (a, b) : (b, a)
        return node(
          graph, "\(op)(%\(left.name), %\(right.name))", a.dtype,
          Self.broadcast(left.shape, right.shape))
      case 3, 4:
        let ops = ["neg", "abs", "sign", "relu"] + (isFloat ? ["tanh", "sigmoid"] : [])
        return node(graph, "\(random.pick(ops))(%\(a.name))", a.dtype, a.shape)
      case 5:
        guard !a.shape.isEmpty else { return nil }
        let axis = random.int(0...(a.shape.count - 1))
        let keep = random.chance(50)
        let ops = ["sum", "max"] + (isFloat ? ["mean"] : [])
        var shape = a.shape
        if keep { shape[axis] = 1 } else { shape.remove(at: axis) }
        return node(
          graph, "\(random.pick(ops))(%\(a.name)) {axes = [\(axis)], keepdims = \(keep)}", a.dtype,
          shape)
      case 6:
        guard a.shape.count >= 2 else { return nil }
        if a.shape.count == 2, random.chance(50) {
          // a @ aᵀ: [r, k] @ [k, r], the integer kernel's sums of products at the limits.
          return node(
            graph, "matmul(%\(a.name), %\(a.name)) {transpose_b = true}", a.dtype,
            [a.shape[0], a.shape[0]])
        }
        var shape = a.shape
        shape.swapAt(shape.count - 1, shape.count - 2)
        return node(graph, "transpose(%\(a.name))", a.dtype, shape)
      case 7:
        switch random.int(0...3) {
        case 0:
          let count = a.shape.reduce(1, *)
          return node(graph, "reshape(%\(a.name)) {shape = [\(count)]}", a.dtype, [count])
        case 1:
          guard !a.shape.isEmpty else { return nil }
          var shape = a.shape
          shape[0] *= 2
          return node(graph, "concat(%\(a.name), %\(a.name)) {axis = 0}", a.dtype, shape)
        case 2:
          let shape = [2] + a.shape
          return node(
            graph, "broadcast_to(%\(a.name)) {shape = \(Self.list(shape))}", a.dtype, shape)
        default:
          guard let first = a.shape.first, first >= 2 else { return nil }
          var shape = a.shape
          shape[0] = first - 1
          return node(graph, "slice(%\(a.name)) {index = [1:\(first)]}", a.dtype, shape)
        }
      default:
        let target = random.pick(Self.dtypes.filter { $0 != a.dtype })
        guard !isFloat || target.isFloatingPoint || a.isInput else { return nil }
        return node(graph, "cast(%\(a.name)) {dtype = \(target)}", target, a.shape)
      }
    }

    var text: String {
      (["graph @RandomGraphs {"] + lines + outputs.map { "  output \($0.name) = %\($0.value)" }
        + ["}"]).joined(separator: "\n")
    }
  }

  @Test("80 random graphs: compiled equals interpreted, integers exactly")
  func randomGraphs() throws {
    var generator = Generator(random: Random(state: 13))
    for index in 0..<80 { generator.graph(index) }
    var graph = try IRParser.parse(generator.text, path: "random.ir")
    _ = try PassRunner(passes: [ShapeInference()]).run(&graph)
    let names = generator.outputs.map(\.name)
    let interpreted = try Interpreter(graph: graph).run(
      inputs: generator.inputs, parameters: [:], outputs: names)
    let options = TestCache.options()
    // Compiled after the passes a model file gets (folding, simplify, CSE, DCE), so they are checked
    // against the interpreter's result on the graph as written too.
    var optimized = graph
    _ = try PassRunner(passes: Pipeline.inference).run(&optimized)
    let compiled = try Model.compile(graph: optimized, options: options).forward(generator.inputs)
    var integerOutputs = 0
    for name in names {
      let (actual, expected) = (try #require(compiled[name]), try #require(interpreted[name]))
      if expected.dtype.isInteger {
        integerOutputs += 1
        let same = actual.withUnsafeBytes { a in
          expected.withUnsafeBytes { e in a.elementsEqual(e) }
        }
        #expect(
          actual.shape == expected.shape && actual.dtype == expected.dtype && same,
          "\(name): compiled \(actual), interpreted \(expected)\n\(Self.excerpt(generator.text, name))"
        )
      } else {
        let scale = expected.doubles().map(abs).filter(\.isFinite).max() ?? 1
        let (rtol, atol): (Double, Double) =
          expected.dtype == .f32
          ? (1e-4, 1e-5 * Swift.max(scale, 1)) : (1e-10, 1e-12 * Swift.max(scale, 1))
        let problem = TestData.mismatch(actual, expected, rtol: rtol, atol: atol)
        #expect(problem == nil, "\(name): \(problem ?? "")\n\(Self.excerpt(generator.text, name))")
      }
    }
    // The generator must keep exercising integers (a change to it that lost them would pass silently).
    #expect(integerOutputs >= 20, "only \(integerOutputs) integer outputs")
  }

  /// The lines of the graph an output belongs to, for the failure message.
  static func excerpt(_ text: String, _ output: String) -> String {
    let prefix = String(output.prefix { $0 != "_" }) + "_"
    return text.split(separator: "\n").filter { $0.contains("%" + prefix) }.joined(separator: "\n")
  }
}
