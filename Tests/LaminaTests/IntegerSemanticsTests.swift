import Foundation
import Lamina
import LaminaIR
import LaminaPasses
import LaminaTestSupport
import Testing

/// Integer arithmetic has one defined meaning, compiled and interpreted (ir-specs/ops.md): `+ - *`,
/// `neg` and `abs` wrap around in two's complement, an integer divided by 0 gives 0, the smallest
/// integer divided by -1 gives itself, and a float cast to an integer saturates (NaN gives 0).
@Suite("Integer semantics")
struct IntegerSemanticsTests {
  static let int32Limits: [Int64] = [
    Int64(Int32.min), Int64(Int32.min) + 1, -7, -2, -1, 0, 1, 2, 7, Int64(Int32.max) - 1,
    Int64(Int32.max),
  ]
  static let int64Limits: [Int64] = [
    Int64.min, Int64.min + 1, Int64(Int32.min) - 1, -7, -2, -1, 0, 1, 2, 7, Int64(Int32.max) + 1,
    Int64.max - 1, Int64.max,
  ]

  static func integerTensor(_ dtype: DType, _ shape: [Int], _ values: [Int64]) -> Tensor {
    dtype == .i32
      ? Tensor(shape: shape, scalars: values.map { Int32(truncatingIfNeeded: $0) })
      : Tensor(shape: shape, scalars: values)
  }

  static func integers(_ tensor: Tensor) -> [Int64] {
    tensor.dtype == .i32
      ? tensor.scalars(as: Int32.self).map(Int64.init) : tensor.scalars(as: Int64.self)
  }

  /// The expected result of a binary op on one pair, from Swift's fixed-width arithmetic.
  static func expected(_ op: String, _ a: Int64, _ b: Int64, _ dtype: DType) -> Int64 {
    if dtype == .i32 {
      let (x, y) = (Int32(a), Int32(b))
      let value: Int32 =
        switch op {
        case "add": x &+ y
        case "sub": x &- y
        case "mul": x &* y
        case "div": y == 0 ? 0 : (y == -1 ? 0 &- x : x / y)
        case "maximum": Swift.max(x, y)
        case "minimum": Swift.min(x, y)
        default: x >= y ? 1 : 0
        }
      return Int64(value)
    }
    switch op {
    case "add": return a &+ b
    case "sub": return a &- b
    case "mul": return a &* b
    case "div": return b == 0 ? 0 : (b == -1 ? 0 &- a : a / b)
    case "maximum": return Swift.max(a, b)
    case "minimum": return Swift.min(a, b)
    default: return a >= b ? 1 : 0
    }
  }

  static func expectedUnary(_ op: String, _ x: Int64, _ dtype: DType) -> Int64 {
    let wrapped: (Int64) -> Int64 = {
      dtype == .i32 ? Int64(Int32(truncatingIfNeeded: $0)) : $0
    }
    switch op {
    case "neg": return wrapped(0 &- x)
    case "abs": return wrapped(x < 0 ? 0 &- x : x)
    case "sign": return x > 0 ? 1 : x < 0 ? -1 : 0
    default: return Swift.max(x, 0)
    }
  }

  static let binaryOps = ["add", "sub", "mul", "div", "maximum", "minimum", "greater_equal"]
  static let unaryOps = ["neg", "abs", "sign", "relu"]

  /// Every binary op on every pair of limit values (a column against a row, broadcast), and every
  /// unary op on each value, for one integer dtype, as IR.
  static func limitGraph(_ dtype: DType) -> String {
    var lines = [
      "graph @Limits {", "  input %a : \(dtype)[n, 1]", "  input %b : \(dtype)[1, n]",
      "  input %x : \(dtype)[n]",
    ]
    for op in binaryOps { lines.append("  %\(op) = \(op)(%a, %b)") }
    for op in unaryOps { lines.append("  %\(op) = \(op)(%x)") }
    // Products ([n, 1] @ [1, n]) and a sum of products ([1, n] @ [n, 1]: Σ x²), wrapping.
    lines.append("  %outer = matmul(%a, %b)")
    lines.append("  %inner = matmul(%b, %a)")
    for op in binaryOps + unaryOps + ["outer", "inner"] {
      lines.append("  output \(op) = %\(op)")
    }
    lines.append("}")
    return lines.joined(separator: "\n")
  }

  /// A typed graph from IR text (shape inference run, as `lamina dump` does).
  static func parse(_ text: String) throws -> Graph {
    var graph = try IRParser.parse(text, path: "generated.ir")
    _ = try PassRunner(passes: [ShapeInference()]).run(&graph)
    return graph
  }

  static func options() throws -> CompileOptions { TestCache.options() }

  @Test(
    "+ - * / max min >= neg abs sign relu matmul at the integer limits: compiled = interpreted = wrapping"
  )
  func limits() throws {
    for dtype in [DType.i32, .i64] {
      let values = dtype == .i32 ? Self.int32Limits : Self.int64Limits
      let n = values.count
      let graph = try Self.parse(Self.limitGraph(dtype))
      let inputs = [
        "a": Self.integerTensor(dtype, [n, 1], values),
        "b": Self.integerTensor(dtype, [1, n], values),
        "x": Self.integerTensor(dtype, [n], values),
      ]
      let names = Self.binaryOps + Self.unaryOps + ["outer", "inner"]
      let interpreted = try Interpreter(graph: graph).run(
        inputs: inputs, parameters: [:], outputs: names)
      let compiled = try Model.compile(graph: graph, options: try Self.options()).forward(inputs)
      for op in Self.binaryOps {
        let want = values.flatMap { a in values.map { b in Self.expected(op, a, b, dtype) } }
        #expect(Self.integers(interpreted[op]!) == want, "interpreted \(dtype) \(op)")
        #expect(Self.integers(compiled[op]!) == want, "compiled \(dtype) \(op)")
      }
      for op in Self.unaryOps {
        let want = values.map { Self.expectedUnary(op, $0, dtype) }
        #expect(Self.integers(interpreted[op]!) == want, "interpreted \(dtype) \(op)")
        #expect(Self.integers(compiled[op]!) == want, "compiled \(dtype) \(op)")
      }
      let outer = values.flatMap { a in values.map { b in Self.expected("mul", a, b, dtype) } }
      let squares = values.map { Self.expected("mul", $0, $0, dtype) }
      let inner = [squares.reduce(0) { Self.expected("add", $0, $1, dtype) }]
      for (name, want) in [("outer", outer), ("inner", inner)] {
        #expect(Self.integers(interpreted[name]!) == want, "interpreted \(dtype) matmul \(name)")
        #expect(Self.integers(compiled[name]!) == want, "compiled \(dtype) matmul \(name)")
      }
    }
  }

  @Test("integer sum and max reduce exactly, sums wrapping, along leading and trailing axes")
  func reductions() throws {
    for dtype in [DType.i32, .i64] {
      let (low, high) =
        dtype == .i32 ? (Int64(Int32.min), Int64(Int32.max)) : (Int64.min, Int64.max)
      // Columns: [high, 1] wraps to low; [high, high] wraps to -2; [high - 1, high] (equal in
      // double for i64) has the maximum high; [low, -1] wraps to high.
      let values: [Int64] = [high, high, high - 1, low, 1, high, high, -1]
      let ir = """
        graph @Reductions {
          input %x : \(dtype)[2, 4]
          %columns = sum(%x) {axes = [0]}
          %rows = sum(%x) {axes = [1]}
          %column_max = max(%x) {axes = [0]}
          %row_max = max(%x) {axes = [1]}
          output columns = %columns
          output rows = %rows
          output column_max = %column_max
          output row_max = %row_max
        }
        """
      let graph = try Self.parse(ir)
      let inputs = ["x": Self.integerTensor(dtype, [2, 4], values)]
      let names = ["columns", "rows", "column_max", "row_max"]
      let interpreted = try Interpreter(graph: graph).run(
        inputs: inputs, parameters: [:], outputs: names)
      let compiled = try Model.compile(graph: graph, options: try Self.options()).forward(inputs)
      let wrap: (Int64) -> Int64 = { dtype == .i32 ? Int64(Int32(truncatingIfNeeded: $0)) : $0 }
      let expected: [String: [Int64]] = [
        "columns": (0..<4).map { wrap(values[$0] &+ values[$0 + 4]) },
        "rows": [0, 4].map { start in wrap(values[start..<(start + 4)].reduce(0, &+)) },
        "column_max": (0..<4).map { Swift.max(values[$0], values[$0 + 4]) },
        "row_max": [0, 4].map { values[$0..<($0 + 4)].max()! },
      ]
      for name in names {
        #expect(
          Self.integers(interpreted[name]!) == expected[name]!, "interpreted \(dtype) \(name)")
        #expect(Self.integers(compiled[name]!) == expected[name]!, "compiled \(dtype) \(name)")
      }
    }
  }

  static let awkwardFloats: [Double] = [
    .nan, .infinity, -.infinity, 0, -0.0, 0.5, -0.5, 2.9, -2.9, 2_147_483_520, 2_147_483_647.5,
    2_147_483_648, 3e9, -2_147_483_648.9, -2_147_483_649, -3e9, 9.2e18, 9_223_372_036_854_775_808,
    -9_223_372_036_854_775_808, 1e19, -1e19, 1e300, -1e300,
  ]

  static func saturated(_ x: Double, _ dtype: DType) -> Int64 {
    if x.isNaN { return 0 }
    let (low, high) =
      dtype == .i32 ? (Int64(Int32.min), Int64(Int32.max)) : (Int64.min, Int64.max)
    if x >= Double(high) { return high }  // Double(Int64.max) is 2^63
    if x <= Double(low) { return low }
    return Int64(x.rounded(.towardZero))
  }

  @Test(
    "casts of NaN, infinities and out-of-range floats to integers saturate, and integers narrow by wrapping"
  )
  func casts() throws {
    let n = Self.awkwardFloats.count
    let m = Self.int64Limits.count
    let ir = """
      graph @Casts {
        input %f : f32[\(n)]
        input %d : f64[\(n)]
        input %w : i64[\(m)]
        %f_i32 = cast(%f) {dtype = i32}
        %f_i64 = cast(%f) {dtype = i64}
        %d_i32 = cast(%d) {dtype = i32}
        %d_i64 = cast(%d) {dtype = i64}
        %w_i32 = cast(%w) {dtype = i32}
        %w_f32 = cast(%w) {dtype = f32}
        %w_f64 = cast(%w) {dtype = f64}
        output f_i32 = %f_i32
        output f_i64 = %f_i64
        output d_i32 = %d_i32
        output d_i64 = %d_i64
        output w_i32 = %w_i32
        output w_f32 = %w_f32
        output w_f64 = %w_f64
      }
      """
    let graph = try Self.parse(ir)
    let inputs = [
      "f": Tensor(shape: [n], scalars: Self.awkwardFloats.map { Float($0) }),
      "d": Tensor(shape: [n], scalars: Self.awkwardFloats),
      "w": Tensor(shape: [m], scalars: Self.int64Limits),
    ]
    let names = ["f_i32", "f_i64", "d_i32", "d_i64", "w_i32", "w_f32", "w_f64"]
    let interpreted = try Interpreter(graph: graph).run(
      inputs: inputs, parameters: [:], outputs: names)
    let compiled = try Model.compile(graph: graph, options: try Self.options()).forward(inputs)
    for (name, source, dtype) in [
      ("f_i32", Self.awkwardFloats.map { Double(Float($0)) }, DType.i32),
      ("f_i64", Self.awkwardFloats.map { Double(Float($0)) }, .i64),
      ("d_i32", Self.awkwardFloats, .i32), ("d_i64", Self.awkwardFloats, .i64),
    ] {
      let want = source.map { Self.saturated($0, dtype) }
      #expect(Self.integers(interpreted[name]!) == want, "interpreted \(name)")
      #expect(Self.integers(compiled[name]!) == want, "compiled \(name)")
    }
    let narrowed = Self.int64Limits.map { Int64(Int32(truncatingIfNeeded: $0)) }
    #expect(Self.integers(interpreted["w_i32"]!) == narrowed)
    #expect(Self.integers(compiled["w_i32"]!) == narrowed)
    let singles = Self.int64Limits.map { Float($0) }
    #expect(interpreted["w_f32"]!.scalars(as: Float.self) == singles)
    #expect(compiled["w_f32"]!.scalars(as: Float.self) == singles)
    let doubles = Self.int64Limits.map { Double($0) }
    #expect(interpreted["w_f64"]!.scalars(as: Double.self) == doubles)
    #expect(compiled["w_f64"]!.scalars(as: Double.self) == doubles)
  }

  /// The `lamina` executable next to the test bundle (built with the package).
  static func laminaExecutable() throws -> String {
    let candidates = [
      URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path,
      Bundle.main.bundleURL.deletingLastPathComponent().path,
      RepositoryPaths.path(".build/debug"),
    ].map { $0 + "/lamina" }
    return try #require(
      candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
      "the lamina executable is not built next to the tests (looked at \(candidates))")
  }

  @Test(
    "i32 min / -1 and x / 0 in a compiled kernel: no SIGFPE, the defined values, in a child process"
  )
  func divisionTrapsInAChildProcess() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let model = """
      model Divide {
        input a: i32[n]
        input b: i32[n]
        output q = a / b
      }
      """
    try model.write(toFile: directory + "/divide.lam", atomically: true, encoding: .utf8)
    try NPY.write(
      Tensor(shape: [4], scalars: [Int32.min, Int32.min, 7, -7] as [Int32]),
      to: directory + "/a.npy")
    try NPY.write(Tensor(shape: [4], scalars: [-1, 0, 0, 2] as [Int32]), to: directory + "/b.npy")
    for extra in [["--cache-dir", directory + "/cache"], ["--interpret"]] {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: try Self.laminaExecutable())
      process.arguments =
        [
          "run", directory + "/divide.lam", "--input", "a=\(directory)/a.npy", "--input",
          "b=\(directory)/b.npy", "--output", "q=\(directory)/q\(extra.count).npy",
        ] + extra
      // Standard error goes to a file: reading a pipe while the child exits can fail with EINTR
      // inside Foundation's readDataToEndOfFile, which traps.
      let errorsPath = directory + "/errors\(extra.count).txt"
      FileManager.default.createFile(atPath: errorsPath, contents: nil)
      let errors = try #require(FileHandle(forWritingAtPath: errorsPath))
      process.standardError = errors
      process.standardOutput = FileHandle.nullDevice
      try process.run()
      process.waitUntilExit()
      try errors.close()
      let message = (try? String(contentsOfFile: errorsPath, encoding: .utf8)) ?? ""
      #expect(
        process.terminationReason == .exit,
        "\(extra): killed by signal \(process.terminationStatus)")
      #expect(process.terminationStatus == 0, "\(extra): \(message)")
      let quotient = try NPY.read(contentsOf: directory + "/q\(extra.count).npy")
      #expect(quotient.scalars(as: Int32.self) == [Int32.min, 0, 0, -3], "\(extra)")
    }
  }
}
