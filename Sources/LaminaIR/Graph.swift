import LaminaSupport

/// Identifies a value of a graph: an index into `Graph.values`.
public struct ValueID: Hashable, Sendable, Comparable, CustomStringConvertible {
  public let index: Int
  public init(_ index: Int) { self.index = index }
  public static func < (lhs: ValueID, rhs: ValueID) -> Bool { lhs.index < rhs.index }
  public var description: String { "v\(index)" }
}

/// What the graph knows about one SSA value.
public struct ValueInfo: Hashable, Sendable {
  /// Unique within the graph; printed as `%name`.
  public var name: String
  /// Nil only between parsing an IR file that omits a result type and shape inference.
  public var type: TensorType?
  public var location: SourceLocation

  public init(name: String, type: TensorType?, location: SourceLocation) {
    self.name = name
    self.type = type
    self.location = location
  }
}

/// One operation: an op from the op table applied to operand values, defining result values.
public struct Node: Hashable, Sendable {
  public var op: String
  public var operands: [ValueID]
  public var attributes: [String: Attribute]
  public var results: [ValueID]
  public var location: SourceLocation
  /// The member nodes of a `fused` node (one kernel computing several ops), in order; empty for
  /// every other op. Members read the fused node's operands and earlier members' results; the
  /// fused node's results are the members' results used outside the group.
  ///
  /// For an op with a region (`scan`, see `OpDefinition.region`) it is the region's graph: nodes
  /// that read `regionArguments` (and earlier body results) and compute `regionResults`, run once
  /// per step. Body values live in the same value table as the rest of the graph.
  public var body: [Node]
  /// The values a region's body reads each step (defined by the node, not by a body member).
  public var regionArguments: [ValueID]
  /// The values a region's body hands back each step (defined by body members or arguments).
  public var regionResults: [ValueID]

  public init(
    op: String, operands: [ValueID], attributes: [String: Attribute] = [:], results: [ValueID],
    location: SourceLocation, body: [Node] = [], regionArguments: [ValueID] = [],
    regionResults: [ValueID] = []
  ) {
    self.op = op
    self.operands = operands
    self.attributes = attributes
    self.results = results
    self.location = location
    self.body = body
    self.regionArguments = regionArguments
    self.regionResults = regionResults
  }

  /// True for a node whose body is a region run over steps (a `scan`), not fused members.
  public var hasRegion: Bool { OpRegistry.definition(op)?.region != nil }

  /// The op name of nodes that group other nodes into one kernel (built by the fusion pass).
  public static let fusedOp = "fused"

  /// The single result of a one-result node.
  public var result: ValueID { results[0] }
}

/// How a parameter gets its first value: `he_normal()`, `uniform(lo: -0.1, hi: 0.1)`.
public struct Initializer: Hashable, Sendable, CustomStringConvertible {
  public var name: String
  public var arguments: [String: Attribute]

  public init(_ name: String, _ arguments: [String: Attribute] = [:]) {
    self.name = name
    self.arguments = arguments
  }

  public var description: String {
    let arguments = arguments.keys.sorted().map { "\($0): \(self.arguments[$0]!)" }
    return "\(name)(\(arguments.joined(separator: ", ")))"
  }
}

/// A graph input: data supplied on every call (`input x: f32[batch, 64]`).
public struct InputDecl: Hashable, Sendable {
  public var value: ValueID
  public init(value: ValueID) { self.value = value }
}

/// A trainable (or frozen) parameter, owned by the compiled model between calls.
public struct ParamDecl: Hashable, Sendable {
  public var value: ValueID
  public var initializer: Initializer
  /// False for frozen parameters: no gradient is computed or applied (transfer learning).
  public var trainable: Bool

  public init(value: ValueID, initializer: Initializer, trainable: Bool = true) {
    self.value = value
    self.initializer = initializer
    self.trainable = trainable
  }
}

/// A value kept between calls that is not a parameter: optimizer state (momentum, moment
/// estimates, the step counter), owned by one training step, or model state (batch norm's running
/// statistics, a random generator's seed), owned by no optimizer and updated by a `StateUpdate`.
public struct StateDecl: Hashable, Sendable {
  public var value: ValueID
  public var initializer: Initializer
  /// The training step whose optimizer owns it; nil for model state.
  public var step: String?

  public init(value: ValueID, initializer: Initializer, step: String?) {
    self.value = value
    self.initializer = initializer
    self.step = step
  }

  /// True for state no optimizer owns (created by a layer, saved with the weights).
  public var isModelState: Bool { step == nil }
}

/// The rule by which model state changes: after a training step, `target` takes the value of
/// `value`, in every training step that computes `trigger` (every step when `trigger` is nil).
///
/// A layer registers it once; the optimizer pass turns it into an `Assignment` of each training step
/// whose loss computation runs the node that defines `trigger` — so a GAN's two steps that both run
/// a shared batch norm both update its running statistics, and a step that does not run it leaves
/// them alone.
public struct StateUpdate: Hashable, Sendable {
  public var target: ValueID
  public var value: ValueID
  /// A value whose computation by a step's loss makes the step apply the update; nil: every step.
  public var trigger: ValueID?

  public init(target: ValueID, value: ValueID, trigger: ValueID?) {
    self.target = target
    self.value = value
    self.trigger = trigger
  }
}

/// An output or loss that the inference entry points (`forward`, `evaluate`) compute through
/// another value: the `mode-specialize` pass's copy of the forward graph, in which mode-dependent
/// ops take their inference form (`OpDefinition.inferenceForm`), so that fusion sees inference's own
/// computation. Training entry points compute `value` itself.
public struct InferenceSpecialization: Hashable, Sendable {
  public var value: ValueID
  public var inference: ValueID

  public init(value: ValueID, inference: ValueID) {
    self.value = value
    self.inference = inference
  }
}

/// At the end of a training step, `target` (a parameter or state) takes the value of `value`.
public struct Assignment: Hashable, Sendable {
  public var step: String
  public var target: ValueID
  public var value: ValueID

  public init(step: String, target: ValueID, value: ValueID) {
    self.step = step
    self.target = target
    self.value = value
  }
}

/// A value the model exposes by name: an output or a loss.
public struct NamedValue: Hashable, Sendable {
  public var name: String
  public var value: ValueID
  public init(name: String, value: ValueID) {
    self.name = name
    self.value = value
  }
}

/// One training step: an optimizer minimizing a named loss over a group of parameters.
///
/// A model has one (`train with sgd(...)`) or several (a GAN's generator and discriminator steps).
public struct TrainStep: Hashable, Sendable {
  public var name: String
  public var optimizer: String
  /// The optimizer's hyperparameters plus `loss` (the loss to minimize) and optionally `params`
  /// (a name pattern selecting the parameters it updates; all trainable ones when absent).
  public var attributes: [String: Attribute]
  public var location: SourceLocation

  public init(
    name: String, optimizer: String, attributes: [String: Attribute], location: SourceLocation
  ) {
    self.name = name
    self.optimizer = optimizer
    self.attributes = attributes
    self.location = location
  }

  public var lossName: String { attributes["loss"]?.stringValue ?? "loss" }
}

/// The gradient of a training step's loss with respect to one of its parameters.
public struct ParameterGradient: Hashable, Sendable {
  public var step: String
  public var parameter: ValueID
  public var gradient: ValueID

  public init(step: String, parameter: ValueID, gradient: ValueID) {
    self.step = step
    self.parameter = parameter
    self.gradient = gradient
  }
}

/// A model as a typed SSA graph.
///
/// Inputs and parameters are the graph's leaves; `nodes` are kept in a valid topological order (every
/// operand is defined by an input, a parameter or an earlier node); outputs, losses and training steps
/// name the values the model exposes.
public struct Graph: Sendable {
  public var name: String
  /// The source file the graph was built from, when there is one.
  public var sourceFile: String?
  public private(set) var values: [ValueInfo] = []
  public var inputs: [InputDecl] = []
  public var params: [ParamDecl] = []
  public var nodes: [Node] = []
  public var outputs: [NamedValue] = []
  public var losses: [NamedValue] = []
  public var trainSteps: [TrainStep] = []
  /// Filled by the autodiff pass: each step's parameter gradients.
  public var gradients: [ParameterGradient] = []
  /// Filled by the optimizer pass: optimizer state, and the updates a training step applies.
  public var states: [StateDecl] = []
  public var assignments: [Assignment] = []
  /// Model state's update rules, registered by layers (see `StateUpdate`).
  public var stateUpdates: [StateUpdate] = []
  /// Filled by the `mode-specialize` pass (on the backend's copy): the values inference entry
  /// points compute instead of outputs and losses.
  public var inferenceSpecializations: [InferenceSpecialization] = []
  /// Filled by the `memory-plan` pass (on the backend's copy): each entry point's arena layout.
  public var memoryPlans: [String: MemoryPlan] = [:]
  private var namesInUse: [String: ValueID] = [:]

  public init(name: String, sourceFile: String? = nil) {
    self.name = name
    self.sourceFile = sourceFile
  }

  // MARK: Values

  /// Creates a value; `name` is made unique by appending `.1`, `.2`, … when already taken.
  public mutating func makeValue(name: String, type: TensorType?, location: SourceLocation)
    -> ValueID
  {
    let id = ValueID(values.count)
    let unique = uniqueName(name)
    values.append(ValueInfo(name: unique, type: type, location: location))
    namesInUse[unique] = id
    return id
  }

  /// A name not used by any value yet, derived from `base`.
  public func uniqueName(_ base: String) -> String {
    if namesInUse[base] == nil { return base }
    var suffix = 1
    while namesInUse["\(base).\(suffix)"] != nil { suffix += 1 }
    return "\(base).\(suffix)"
  }

  /// A fresh temporary name (`%7`).
  public func temporaryName() -> String {
    var counter = values.count
    while namesInUse[String(counter)] != nil { counter += 1 }
    return String(counter)
  }

  public func value(named name: String) -> ValueID? { namesInUse[name] }

  public subscript(value: ValueID) -> ValueInfo { values[value.index] }

  /// The type of a value; every value has one once shape inference has run (the verifier checks).
  public func type(of value: ValueID) -> TensorType {
    guard let type = values[value.index].type else {
      preconditionFailure(
        "value %\(values[value.index].name) has no type: run shape inference first")
    }
    return type
  }

  public mutating func setType(_ type: TensorType?, of value: ValueID) {
    values[value.index].type = type
  }

  public mutating func rename(_ value: ValueID, to newName: String) {
    namesInUse[values[value.index].name] = nil
    let unique = uniqueName(newName)
    values[value.index].name = unique
    namesInUse[unique] = value
  }

  /// Renames temporaries (values with numeric names) to `0`, `1`, `2`, … in definition order, so
  /// printed IR reads in sequence no matter how many values were made and dropped on the way.
  public mutating func renumberTemporaries() {
    let temporaries = values.indices.filter { values[$0].name.first?.isNumber == true }
    // Free every temporary name first so the new names cannot collide with old ones.
    for index in temporaries {
      namesInUse[values[index].name] = nil
      values[index].name = "\u{0}\(index)"
    }
    var counter = 0
    for index in temporaries {
      while namesInUse[String(counter)] != nil { counter += 1 }
      values[index].name = String(counter)
      namesInUse[String(counter)] = ValueID(index)
      counter += 1
    }
  }

  // MARK: Building

  /// Declares an input and returns its value.
  @discardableResult
  public mutating func addInput(name: String, type: TensorType, location: SourceLocation) -> ValueID
  {
    let value = makeValue(name: name, type: type, location: location)
    inputs.append(InputDecl(value: value))
    return value
  }

  /// Declares a parameter and returns its value.
  @discardableResult
  public mutating func addParam(
    name: String, type: TensorType, initializer: Initializer, trainable: Bool = true,
    location: SourceLocation
  ) -> ValueID {
    let value = makeValue(name: name, type: type, location: location)
    params.append(ParamDecl(value: value, initializer: initializer, trainable: trainable))
    return value
  }

  /// Appends a node with one result and returns the result.
  @discardableResult
  public mutating func addNode(
    _ op: String, _ operands: [ValueID], attributes: [String: Attribute] = [:],
    resultName: String? = nil, type: TensorType?, location: SourceLocation
  ) -> ValueID {
    let result = makeValue(name: resultName ?? temporaryName(), type: type, location: location)
    nodes.append(
      Node(
        op: op, operands: operands, attributes: attributes, results: [result], location: location))
    return result
  }

  // MARK: Queries

  /// Where each value comes from.
  public enum Definition: Hashable, Sendable {
    case input(Int)
    case param(Int)
    case state(Int)
    case node(Int)
  }

  /// The definition of every value, indexed by value.
  public func definitions() -> [Definition?] {
    var result = [Definition?](repeating: nil, count: values.count)
    for (index, input) in inputs.enumerated() { result[input.value.index] = .input(index) }
    for (index, param) in params.enumerated() { result[param.value.index] = .param(index) }
    for (index, state) in states.enumerated() { result[state.value.index] = .state(index) }
    for (index, node) in nodes.enumerated() {
      for value in node.results { result[value.index] = .node(index) }
    }
    return result
  }

  /// The parameter declaration of a value, if it is a parameter.
  public func param(for value: ValueID) -> ParamDecl? { params.first { $0.value == value } }

  /// Parameters, state, and the results of nodes that compute the same values in every call and
  /// mode (`Node.isPureInEveryMode`) from them alone: values that change only when the
  /// parameters or state do.
  public func fixedValues() -> Set<ValueID> {
    var fixed = Set(params.map(\.value)).union(states.map(\.value))
    for node in nodes where node.isPureInEveryMode && node.operands.allSatisfy(fixed.contains) {
      fixed.formUnion(node.results)
    }
    return fixed
  }

  /// Whether `value` is one of `fixedValues()`.
  ///
  /// Walks back from `value` through its producers instead of over the whole graph: the code
  /// generator asks this of every convolution's weights several times, and the whole walk made
  /// ResNet-50's C generation take 280 ms instead of 30.
  public func isFixed(_ value: ValueID) -> Bool {
    var pending = [value]
    var seen = Set<ValueID>()
    while let current = pending.popLast() {
      guard seen.insert(current).inserted else { continue }
      if params.contains(where: { $0.value == current })
        || states.contains(where: { $0.value == current })
      {
        continue
      }
      guard let producer = nodes.last(where: { $0.results.contains(current) }),
        producer.isPureInEveryMode
      else { return false }
      pending += producer.operands
    }
    return true
  }

  /// The value of an output or loss by its public name.
  public func exposedValue(named name: String) -> ValueID? {
    (outputs.first { $0.name == name } ?? losses.first { $0.name == name })?.value
  }

  /// The value an inference entry point computes for output or loss `value`: its specialization,
  /// or `value` itself.
  public func inferenceValue(of value: ValueID) -> ValueID {
    inferenceSpecializations.first { $0.value == value }?.inference ?? value
  }

  /// Indices of the nodes needed to compute `targets`, in graph order.
  public func nodesNeeded(for targets: [ValueID]) -> [Int] {
    let definitions = definitions()
    var needed = Set<Int>()
    var stack = targets
    var visited = Set<ValueID>()
    while let value = stack.popLast() {
      guard visited.insert(value).inserted else { continue }
      if case .node(let index)? = definitions[value.index] {
        needed.insert(index)
        stack.append(contentsOf: nodes[index].operands)
      }
    }
    return needed.sorted()
  }

  /// Inputs that `targets` depend on.
  public func inputsNeeded(for targets: [ValueID]) -> [ValueID] {
    let used = Set(nodesNeeded(for: targets).flatMap { nodes[$0].operands } + targets)
    return inputs.map(\.value).filter(used.contains)
  }

  /// Number of uses of each value by nodes, outputs and losses.
  public func useCounts() -> [Int] {
    var counts = [Int](repeating: 0, count: values.count)
    for node in nodes { for operand in node.operands { counts[operand.index] += 1 } }
    for named in outputs + losses { counts[named.value.index] += 1 }
    return counts
  }

  /// Values bound to a public name (outputs and losses), which passes must keep.
  public var exposedValues: Set<ValueID> {
    Set(
      (outputs + losses).map(\.value) + gradients.map(\.gradient) + assignments.map(\.value)
        + stateUpdates.flatMap { [$0.value] + ($0.trigger.map { [$0] } ?? []) }
        + inferenceSpecializations.map(\.inference))
  }

  /// The declaration of a value, if it is state.
  public func state(for value: ValueID) -> StateDecl? { states.first { $0.value == value } }

  /// Model state: state no optimizer owns.
  public var modelStates: [StateDecl] { states.filter(\.isModelState) }

  /// Declares state (optimizer state of `step`, or model state when `step` is nil) and returns
  /// its value.
  @discardableResult
  public mutating func addState(
    name: String, type: TensorType, initializer: Initializer, step: String?,
    location: SourceLocation
  ) -> ValueID {
    let value = makeValue(name: name, type: type, location: location)
    states.append(StateDecl(value: value, initializer: initializer, step: step))
    return value
  }
}

extension Node {
  /// Whether the node gives the same results for the same operands in every call and mode: no
  /// effects, not mode-dependent, not a loop; a fused node when every member is.
  public var isPureInEveryMode: Bool {
    guard !hasRegion else { return false }
    return (op == Node.fusedOp ? body : [self]).allSatisfy { member in
      guard let definition = member.definition else { return false }
      return definition.effects.isPure && !definition.dependsOnMode
    }
  }
}
