import LaminaSupport

/// How an op combines with its neighbours when fusing (TVM's pattern kinds).
public enum FusionKind: String, Sendable, Hashable {
  /// One output element from the same-position element of each operand (`relu`, `add`).
  case elementwise
  /// Elementwise with broadcasting operands.
  case broadcast
  /// Each output element reads one input element at a computed position (`transpose`, `slice`).
  case injective
  /// Output elements combine many input elements along axes (`sum`, `softmax`).
  case reduction
  /// A matrix product whose output tile can absorb elementwise consumers (bias, activation).
  case matmulLike = "matmul-like"
  /// Never fused.
  case opaque
}

/// One operand slot of an op.
public struct OperandSpec: Sendable, Hashable {
  public var name: String
  /// A variadic slot takes one or more values (`concat`).
  public var isVariadic: Bool
  /// An optional slot may be left out, with every slot after it (`layer_norm`'s `weight`, `bias`).
  public var isOptional: Bool

  public init(_ name: String, variadic: Bool = false, optional: Bool = false) {
    self.name = name
    self.isVariadic = variadic
    self.isOptional = optional
  }
}

/// One attribute an op accepts, with its kind and default.
public struct AttributeSpec: Sendable, Hashable {
  public var name: String
  public var kind: AttributeKind
  /// Filled in when the attribute is not given; nil with `isRequired == false` means "absent".
  public var defaultValue: Attribute?
  public var isRequired: Bool
  public var summary: String

  public init(
    _ name: String, _ kind: AttributeKind, default defaultValue: Attribute? = nil,
    required: Bool = false, _ summary: String = ""
  ) {
    self.name = name
    self.kind = kind
    self.defaultValue = defaultValue
    self.isRequired = required
    self.summary = summary
  }
}

/// Why an op rejects its operands or attributes; the caller locates it at the node.
public struct ShapeError: Error, Sendable, Hashable {
  public var message: String
  public var help: String?
  public init(_ message: String, help: String? = nil) {
    self.message = message
    self.help = help
  }
}

/// What a shape rule sees: the operand types and the node's attributes (defaults filled in).
public struct ShapeContext: Sendable {
  public var op: String
  public var operands: [TensorType]
  public var attributes: [String: Attribute]
  /// For ops with a region: the body's argument and result types (nil until the body is typed).
  public var region: RegionTypes?

  public init(op: String, operands: [TensorType], attributes: [String: Attribute]) {
    self.op = op
    self.operands = operands
    self.attributes = attributes
  }

  public func int(_ name: String) -> Int? { attributes[name]?.intValue }
  public func double(_ name: String) -> Double? { attributes[name]?.doubleValue }
  public func ints(_ name: String) -> [Int]? { attributes[name]?.intsValue }
  public func bool(_ name: String) -> Bool? { attributes[name]?.boolValue }

  /// An axis in `-rank..<rank`, made non-negative.
  public func axis(_ axis: Int, rank: Int, operand: String = "its operand") throws(ShapeError)
    -> Int
  {
    guard axis >= -rank, axis < rank else {
      throw ShapeError(
        "\(op): axis \(axis) is out of range for \(operand) of rank \(rank) (valid: \(-max(rank, 1)) to \(max(rank, 1) - 1))"
      )
    }
    return axis < 0 ? axis + rank : axis
  }

  /// Every operand must have the same dtype; returns it.
  public func commonDType() throws(ShapeError) -> DType {
    let dtype = operands[0].dtype
    for operand in operands.dropFirst() where operand.dtype != dtype {
      throw ShapeError(
        "\(op): operands have different dtypes \(operands.map(\.description).joined(separator: " and "))",
        help: "convert one side with cast(x, dtype: \(dtype))")
    }
    return dtype
  }

  /// Rejects integer operands for ops that only make sense on floating-point values.
  public func requireFloat(_ type: TensorType, _ what: String = "operand") throws(ShapeError) {
    guard type.dtype.isFloatingPoint else {
      throw ShapeError("\(op) needs a floating-point \(what), got \(type)")
    }
  }
}

/// A shape rule: a short description for the op table docs and the function that applies it.
public struct ShapeRule: Sendable {
  public var description: String
  public var infer: @Sendable (ShapeContext) throws(ShapeError) -> [TensorType]

  public init(
    _ description: String,
    _ infer: @escaping @Sendable (ShapeContext) throws(ShapeError) -> [TensorType]
  ) {
    self.description = description
    self.infer = infer
  }
}

/// What an interpreter kernel sees: operand tensors, attributes, and the concrete result types.
public struct InterpretContext: @unchecked Sendable {
  public var operands: [Tensor]
  public var attributes: [String: Attribute]
  /// Result dtypes and concrete shapes (symbols already bound).
  public var results: [(dtype: DType, shape: [Int])]
  /// Inference or a training step; ops whose definition `dependsOnMode` read it.
  public var mode: ExecutionMode

  public init(
    operands: [Tensor], attributes: [String: Attribute], results: [(dtype: DType, shape: [Int])],
    mode: ExecutionMode = .inference
  ) {
    self.operands = operands
    self.attributes = attributes
    self.results = results
    self.mode = mode
  }

  public func int(_ name: String) -> Int? { attributes[name]?.intValue }
  public func double(_ name: String) -> Double? { attributes[name]?.doubleValue }
  public func ints(_ name: String) -> [Int]? { attributes[name]?.intsValue }
  public func bool(_ name: String) -> Bool? { attributes[name]?.boolValue }

  /// Builds result `index` from double-precision values, rounding to its dtype.
  public func result(_ index: Int = 0, _ values: [Double]) -> Tensor {
    Tensor(dtype: results[index].dtype, shape: results[index].shape, doubles: values)
  }
}

/// A failure while interpreting that the shapes could not rule out (an out-of-range label, say).
public struct InterpretError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// Everything Lamina knows about one op, in one place.
///
/// Later stages add their part here (gradient rule, C emission), so adding an op touches one entry.
public struct OpDefinition: Sendable {
  public var name: String
  /// One sentence for the op table reference.
  public var summary: String
  /// The math, as the reference documents it (`y = max(x, 0)`).
  public var semantics: String
  public var operands: [OperandSpec]
  public var attributes: [AttributeSpec]
  public var fusion: FusionKind
  public var shape: ShapeRule
  /// The reference interpreter's implementation: plain, obviously correct, computed in `Double`.
  public var interpret: @Sendable (InterpretContext) throws -> [Tensor]
  /// How the C backend computes the op.
  public var c: CEmission
  /// What the op does besides computing its results (mode, random numbers, state).
  public var effects: OpEffects = []
  /// True for ops that compute differently in a training step than at inference (dropout, batch
  /// norm): the interpreter and the C backend then pass the mode to them, and compiled code gets one
  /// kernel per mode.
  public var dependsOnMode: Bool {
    get { effects.contains(.dependsOnMode) }
    set {
      if newValue { effects.insert(.dependsOnMode) } else { effects.remove(.dependsOnMode) }
    }
  }
  /// For reductions over axes (`sum`, `mean`, `max`): how the values of one output element fold.
  public var reduction: ReductionDescription?
  /// For softmax-like ops: which normalization along the axis.
  public var normalization: Normalization?
  /// For ops whose kernel can run fused consumers on each block of its result (matmul).
  public var epilogue: EpilogueProducer?
  /// For pooling ops: how each window is reduced (max pooling: `.maximum`).
  public var windowReduction: WindowReduction?
  /// One memory effect per operand slot (the last one standing for every operand of a variadic
  /// slot). By default an op emitted as a C expression per element reads each operand at the
  /// position it writes, so its result may take an operand's buffer; every other op only reads.
  public var operandEffects: [OperandEffect]
  /// Identities simplification uses (neutral elements, involutions).
  public var algebra = AlgebraicProperties.none
  /// For ops that only move elements: how.
  public var rearrangement: Rearrangement?
  /// For `.permutation` rearrangements: the permutation a node applies.
  public var permutation: PermutationRule?
  /// For ops that lay their operands end to end along an axis (`concat`): which axis.
  public var concatenation: Concatenation?
  /// For `.selection` rearrangements: the strided window of the operand a node reads, when it is one.
  public var window: WindowRule?
  /// For each operand slot, the attribute that makes the op read that operand with its last two
  /// axes swapped (matmul's `transpose_a`): a transpose feeding that operand folds into it.
  public var operandTransposeAttributes: [String?] = []
  /// The reverse-mode rule; nil for ops that are not differentiable (the autodiff pass reports a
  /// path to a parameter through one).
  public var gradient: GradientRule?
  /// For ops the C backend compiles as other ops (`c: .decomposed`): the equivalent graph of
  /// simpler ops, which the `decompose` pass substitutes before fusion.
  public var decomposition: DecompositionRule?
  /// For mode-dependent ops: the pure computation that gives the op's result at inference, which
  /// the backend's inference entry points run instead (`mode-specialize`). Nil: none is declared,
  /// and inference runs the op itself in inference mode.
  public var inferenceForm: InferenceForm?
  /// For ops that run a body graph (`scan`): how the body's arguments and results relate to the
  /// node's operands and results. Passes ask this trait, not the op's name.
  public var region: RegionKind? {
    if case .region(let kind) = c { return kind }
    return nil
  }

  public init(
    _ name: String, summary: String, semantics: String, operands: [OperandSpec],
    attributes: [AttributeSpec] = [], fusion: FusionKind, c: CEmission, effects: OpEffects = [],
    reduction: ReductionDescription? = nil, epilogue: EpilogueProducer? = nil,
    windowReduction: WindowReduction? = nil, algebra: AlgebraicProperties = .none,
    rearrangement: Rearrangement? = nil,
    permutation: PermutationRule? = nil, window: WindowRule? = nil,
    concatenation: Concatenation? = nil,
    operandTransposeAttributes: [String?] = [],
    shape: ShapeRule,
    interpret: @escaping @Sendable (InterpretContext) throws -> [Tensor],
    gradient: GradientRule? = nil
  ) {
    self.c = c
    self.effects = effects
    self.reduction = reduction
    self.epilogue = epilogue
    self.windowReduction = windowReduction
    self.algebra = algebra
    self.rearrangement = rearrangement
    self.permutation = permutation
    self.window = window
    self.concatenation = concatenation
    self.operandTransposeAttributes = operandTransposeAttributes
    self.gradient = gradient
    self.name = name
    self.summary = summary
    self.semantics = semantics
    self.operands = operands
    self.attributes = attributes
    self.fusion = fusion
    self.shape = shape
    self.interpret = interpret
    var elementwise = false
    if case .expression = c { elementwise = fusion == .elementwise || fusion == .broadcast }
    self.operandEffects = operands.map { _ in elementwise ? .readSamePosition : .read }
  }

  /// The effect on operand `position` (a variadic slot's effect covers all its operands).
  public func effect(ofOperand position: Int) -> OperandEffect {
    operandEffects.isEmpty ? .read : operandEffects[min(position, operandEffects.count - 1)]
  }

  /// The number of operands accepted: a range when the last slot is variadic.
  public var operandCount: ClosedRange<Int> {
    if operands.last?.isVariadic == true { return operands.count...Int.max }
    let required = operands.prefix { !$0.isOptional }.count
    return required...operands.count
  }

  /// The signature as the op table reference prints it: `concat(inputs...) {axis: int = 0}`.
  public var signature: String {
    let operandList = operands.map {
      $0.isVariadic ? "\($0.name)..." : $0.isOptional ? "\($0.name)?" : $0.name
    }
    var text = "\(name)(\(operandList.joined(separator: ", ")))"
    if !attributes.isEmpty {
      let attributeList = attributes.map { spec -> String in
        var item = "\(spec.name): \(spec.kind.rawValue)"
        if let value = spec.defaultValue {
          item += " = \(value)"
        } else if !spec.isRequired {
          item += "?"
        }
        return item
      }
      text += " {\(attributeList.joined(separator: ", "))}"
    }
    return text
  }

  /// Checks the attributes given to a node and fills in defaults.
  ///
  /// Returns the complete attribute dictionary, or the problems found, one message each.
  public func resolveAttributes(_ given: [String: Attribute]) -> Result<
    [String: Attribute], ShapeError
  > {
    var resolved: [String: Attribute] = [:]
    for (name, value) in given {
      guard let spec = attributes.first(where: { $0.name == name }) else {
        let known = attributes.map(\.name)
        let suggestion = closestName(to: name, among: known)
        return .failure(
          ShapeError(
            known.isEmpty
              ? "\(self.name) takes no attribute, got '\(name)'"
              : "\(self.name) has no attribute '\(name)' (it takes \(known.joined(separator: ", ")))",
            help: suggestion.map { "did you mean '\($0)'?" }))
      }
      guard let coerced = value.coerced(to: spec.kind) else {
        return .failure(
          ShapeError("\(self.name): attribute '\(name)' must be \(spec.kind), got \(value)"))
      }
      resolved[name] = coerced
    }
    for spec in attributes where resolved[spec.name] == nil {
      if let value = spec.defaultValue {
        resolved[spec.name] = value
      } else if spec.isRequired {
        return .failure(
          ShapeError("\(self.name) needs the attribute '\(spec.name)' (\(spec.kind))"))
      }
    }
    return .success(resolved)
  }

  /// Applies the shape rule after checking operand count and attributes.
  ///
  /// - Parameter region: for ops with a region, the types of the body's arguments and results.
  public func inferTypes(
    operands: [TensorType], attributes given: [String: Attribute], region: RegionTypes? = nil
  )
    throws(ShapeError) -> (types: [TensorType], attributes: [String: Attribute])
  {
    guard operandCount.contains(operands.count) else {
      let expected =
        operandCount.upperBound == Int.max
        ? "at least \(operandCount.lowerBound)"
        : operandCount.count > 1
          ? "\(operandCount.lowerBound) to \(operandCount.upperBound)"
          : "\(operandCount.lowerBound)"
      throw ShapeError(
        "\(name) takes \(expected) operand\(operandCount.lowerBound == 1 ? "" : "s"), got \(operands.count)",
        help: "the signature is \(signature)")
    }
    let attributes: [String: Attribute]
    switch resolveAttributes(given) {
    case .success(let resolved): attributes = resolved
    case .failure(let error): throw error
    }
    var context = ShapeContext(op: name, operands: operands, attributes: attributes)
    context.region = region
    let types = try shape.infer(context)
    return (types, attributes)
  }
}

/// How the C backend computes an op.
public enum CEmission: Sendable {
  /// One C expression per output element, of the operand elements (already loaded into variables)
  /// and the attributes. Elementwise chains fuse by nesting these expressions.
  case expression(@Sendable (CExpressionContext) -> String)
  /// A kernel of the C backend's kernel library.
  case kernel(KernelID)
  /// No computation: the result is the operand's buffer seen with another shape (`reshape`).
  case alias
  /// No kernel of its own: the `decompose` pass replaces the node by the op's `decomposition`
  /// (`layer_norm` becomes mean, variance and normalize, which fusion makes one row kernel).
  case decomposed
  /// A loop in the entry point running the body's kernels once per step (`scan`).
  case region(RegionKind)
}

/// The types of a region's body, for its op's shape rule.
public struct RegionTypes: Sendable, Hashable {
  public var arguments: [TensorType]
  public var results: [TensorType]
  public init(arguments: [TensorType], results: [TensorType]) {
    self.arguments = arguments
    self.results = results
  }
}

/// What kind of region an op runs.
public enum RegionKind: String, Sendable, Hashable {
  /// A scan over the leading axis of its sequence operands (see the `scan` op).
  case scan
}

/// What an op's C expression template sees.
public struct CExpressionContext: Sendable {
  /// C expressions for the operand elements, in operand order.
  public var operands: [String]
  public var attributes: [String: Attribute]
  /// The element type of the result.
  public var dtype: DType
  public var operandDTypes: [DType]
  /// The entry point being generated: inference (`lamina_forward`) or a training step.
  public var mode: ExecutionMode

  public init(
    operands: [String], attributes: [String: Attribute], dtype: DType, operandDTypes: [DType],
    mode: ExecutionMode = .inference
  ) {
    self.operands = operands
    self.attributes = attributes
    self.dtype = dtype
    self.operandDTypes = operandDTypes
    self.mode = mode
  }

  /// The C element type: `float`, `double`, `int32_t`, `int64_t`.
  public var type: String { CExpressionContext.cType(dtype) }

  public static func cType(_ dtype: DType) -> String {
    switch dtype {
    case .f32: "float"
    case .f64: "double"
    case .i32: "int32_t"
    case .i64: "int64_t"
    }
  }

  /// The libm function for the result dtype: `exp` → `expf` for f32.
  public func math(_ name: String) -> String {
    // libm's tanhf, expf and exp are calls the vectorizer cannot see through; the inline forms vectorize.
    if name == "tanh" && dtype == .f32 { return "lamina_tanhf" }
    if name == "exp" { return dtype == .f32 ? "lamina_expf" : "lamina_exp" }
    return dtype == .f32 ? name + "f" : name
  }

  /// A literal of the result dtype: `0.5f`, `0.5`, `2`.
  public func literal(_ value: Double) -> String {
    switch dtype {
    case .f32:
      let text = formatFloat(Double(Float(value)))
      return text.contains("e") || text.contains(".") ? text + "f" : text + ".0f"
    case .f64: return formatFloat(value)
    case .i32, .i64:
      // Converted as `cast` converts a float (saturating, NaN to 0). The smallest integer has no
      // literal in C (2147483648 does not fit the type its minus sign applies to).
      let integer = saturatingInteger(value, dtype)
      if integer == Int64(Int32.min) && dtype == .i32 { return "(-2147483647 - 1)" }
      if integer == Int64.min { return "(-INT64_C(9223372036854775807) - 1)" }
      return dtype == .i64 && Int32(exactly: integer) == nil
        ? "INT64_C(\(integer))" : String(integer)
    }
  }

  public var isFloatingPoint: Bool { dtype.isFloatingPoint }

  /// The unsigned C type of an integer result's width (`uint32_t` for i32).
  var unsignedType: String { dtype == .i32 ? "uint32_t" : "uint64_t" }

  /// `a op b` (`+`, `-` or `*`) on integer operands, wrapping in two's complement: computed in the
  /// unsigned type, where overflow is defined in C (signed overflow is undefined behaviour), and
  /// converted back (gcc and clang convert modulo 2^width).
  func wrapping(_ a: String, _ op: String, _ b: String) -> String {
    "(\(type))((\(unsignedType))(\(a)) \(op) (\(unsignedType))(\(b)))"
  }

  /// `-x` on an integer operand, wrapping: the negation of the smallest value is itself.
  func wrappingNegation(_ x: String) -> String {
    "(\(type))((\(unsignedType))0 - (\(unsignedType))(\(x)))"
  }
}

/// The closest name by edit distance, when it is close enough to be a likely typo.
public func closestName(to name: String, among candidates: [String]) -> String? {
  var best: (name: String, distance: Int)?
  for candidate in candidates {
    let distance = editDistance(name, candidate)
    if distance <= max(1, min(name.count, candidate.count) / 3), distance < (best?.distance ?? .max)
    {
      best = (candidate, distance)
    }
  }
  return best?.name
}

/// Edit distance between two strings: insertions, deletions, substitutions and swaps of neighbours
/// (optimal string alignment).
public func editDistance(_ a: String, _ b: String) -> Int {
  let a = Array(a.lowercased())
  let b = Array(b.lowercased())
  if a.isEmpty { return b.count }
  if b.isEmpty { return a.count }
  var beforePrevious = Array(0...b.count)
  var previous = beforePrevious
  var current = previous
  for i in 1...a.count {
    current[0] = i
    for j in 1...b.count {
      let cost = a[i - 1] == b[j - 1] ? 0 : 1
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
      // Two swapped neighbours are one typo (`adma` for `adam`).
      if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
        current[j] = min(current[j], beforePrevious[j - 2] + 1)
      }
    }
    (beforePrevious, previous, current) = (previous, current, beforePrevious)
  }
  return previous[b.count]
}
