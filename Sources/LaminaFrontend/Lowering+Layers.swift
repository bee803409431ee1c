import LaminaIR
import LaminaSupport

/// Layer calls and shared instances of layers and blocks.
extension Lowering {
  /// Expands a layer call. `instanceScope` names the parameters of a shared instance being called.
  mutating func callLayer(
    _ layer: LayerDefinition, _ arguments: [Argument], at location: SourceLocation,
    instanceScope: String? = nil, leading: Value? = nil
  )
    -> Value
  {
    if case .poisoned? = leading { return .poisoned }
    let bound = bindArguments(
      arguments, to: layerSignature(layer), leading: leading, at: location)
    let inputs = bound.tensors.compactMap { if case .tensor(let id) = $0.value { id } else { nil } }
    let options = bound.options
    // Options without inputs make an instance, called later with shared parameters.
    if inputs.isEmpty, instanceScope == nil, leading == nil, !bound.failed, !bound.hasPositional {
      var name: String?
      if case .string(let given)? = options["name"] { name = given }
      return makeInstance(.layer(layer), arguments, name: name, at: location)
    }
    if bound.failed { return .poisoned }
    if inputs.count < layer.inputCount {
      diagnostics.error(
        "\(layer.name) needs \(layer.inputCount) tensor input\(layer.inputCount == 1 ? "" : "s"), got \(inputs.count)",
        at: location)
      return .poisoned
    }
    let scopeName: String
    if let instanceScope {
      scopeName = instanceScope
    } else if case .string(let name)? = options["name"] {
      scopeName = scope.qualified(name)
    } else {
      scopeName = scope.qualified(nextInstanceName(layer.name))
    }
    var builder = LayerBuilder(
      graph: graph, scopeName: scopeName, location: location, inputs: inputs, options: options,
      sharesParameters: instanceScope != nil || scope.sharesParameters)
    builder.freezePatterns = modelFreezePatterns
    graph = Graph(name: "")  // the builder owns the graph while it expands
    do {
      let result = try layer.expand(&builder)
      graph = builder.graph
      return .tensor(result)
    } catch {
      graph = builder.graph
      diagnostics.error(error.message, at: location, help: error.help)
      return .poisoned
    }
  }

  /// A layer's tensor inputs, positionally, then its options by label, as the layer table declares.
  func layerSignature(_ layer: LayerDefinition) -> CallSignature {
    CallSignature(
      callee: layer.name, noun: "option", slots: layer.options.map(ArgumentSlot.init(option:)),
      maximumTensors: layer.inputCount, requiresTensors: true)
  }

  /// Binds a block or layer's options and a scope name, for calls that share parameters.
  ///
  /// The parameters are named after `name:`, else the `let` being defined (`let critic = Critic()`
  /// gives `critic.dense_0.weight`, as a PyTorch module attribute would), else `KIND_N`.
  mutating func makeInstance(
    _ kind: Instance.Kind, _ arguments: [Argument], name: String?, at location: SourceLocation
  ) -> Value {
    let kindName: String
    switch kind {
    case .block(let block): kindName = block.name
    case .layer(let layer): kindName = layer.name
    }
    let scopeName = scope.qualified(name ?? scope.defining ?? nextInstanceName(kindName))
    if graph.values.contains(where: { $0.name.hasPrefix(scopeName + ".") }) {
      diagnostics.error(
        "the name \(scopeName) is already used by other parameters", at: location,
        help: "give the instance another name with name:")
      return .poisoned
    }
    return .instance(Instance(kind: kind, configuration: arguments, scopeName: scopeName))
  }

  /// Calls a shared instance: the first call creates its parameters, later calls reuse them.
  mutating func callInstance(
    _ instance: Instance, _ arguments: [Argument], at location: SourceLocation,
    leading: Value? = nil, alsoLeading: [Value] = []
  ) -> Value {
    if let option = arguments.first(where: { $0.label != nil }) {
      diagnostics.error(
        "an instance is called with its inputs only; its options were fixed when it was made",
        at: option.location)
      return .poisoned
    }
    if case .layer = instance.kind, !alsoLeading.isEmpty {
      diagnostics.error(
        "a loop's step must be a block taking (input, state), not a layer", at: location)
      return .poisoned
    }
    guard !arguments.isEmpty || leading != nil else {
      diagnostics.error("an instance of \(instance.kindName) needs its tensor inputs", at: location)
      return .poisoned
    }
    switch instance.kind {
    case .block(let block):
      return callBlock(
        block, leading: leading, alsoLeading: alsoLeading,
        arguments: arguments + instance.configuration, at: location,
        instanceScope: instance.scopeName)
    case .layer(let layer):
      return callLayer(
        layer, arguments + instance.configuration.filter { $0.label != "name" }, at: location,
        instanceScope: instance.scopeName, leading: leading)
    }
  }

}
