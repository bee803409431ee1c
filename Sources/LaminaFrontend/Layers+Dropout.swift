import LaminaIR
import LaminaSupport

extension LayerRegistry {
  /// Layers that draw random numbers.
  static let randomLayers: [LayerDefinition] = [
    LayerDefinition(
      "dropout",
      summary:
        "Inverted dropout (PyTorch Dropout): in a training step each element is zeroed with probability `rate` and the others scaled by 1/(1 - rate); at inference the identity. The mask comes from the model's Philox generator (model state random.seed, the training seed, and random.step, the training step count), so a fixed seed reproduces a run exactly, compiled or interpreted.",
      options: [
        LayerOptionSpec(
          "rate", .number, required: true, "the probability of zeroing an element, in [0, 1)")
      ]
    ) { builder throws(ShapeError) in
      let x = builder.inputs[0]
      let rate = builder.double("rate") ?? 0
      guard rate >= 0, rate < 1 else {
        throw ShapeError(
          "dropout: rate must be at least 0 and below 1, got \(Attribute.float(rate))",
          help: "rate is the probability of zeroing an element: dropout(rate: 0.25)")
      }
      let (seed, step) = try builder.randomGeneratorState()
      // Each dropout node draws its own mask: its stream id is its position among them.
      let stream = builder.graph.nodes.filter { $0.is(Ops.dropout) }.count
      return try builder.op(
        Ops.dropout.name, [x, seed, step], ["rate": .float(rate), "stream": .int(stream)])
    }
  ]
}

extension LayerBuilder {
  /// The model's random generator state (`RandomGenerator`): made by the first layer that needs it,
  /// with the rule that advances the step counter by one in every training step.
  mutating func randomGeneratorState() throws(ShapeError) -> (seed: ValueID, step: ValueID) {
    let names = [RandomGenerator.seedName, RandomGenerator.stepName]
    let existing = names.map { graph.value(named: $0) }
    if let seed = existing[0], let step = existing[1],
      graph.state(for: seed)?.isModelState == true, graph.state(for: step)?.isModelState == true
    {
      return (seed, step)
    }
    if let taken = zip(names, existing).first(where: { $0.1 != nil })?.0 {
      throw ShapeError(
        "dropout keeps the model's random generator in \(taken), but that name is taken",
        help: "rename the value called \(taken)")
    }
    let scalar = TensorType.scalar(.i64)
    let seed = graph.addState(
      name: RandomGenerator.seedName, type: scalar, initializer: Initializer("zeros"), step: nil,
      location: location)
    let step = graph.addState(
      name: RandomGenerator.stepName, type: scalar, initializer: Initializer("zeros"), step: nil,
      location: location)
    let one = try op(Ops.constant.name, [], ["value": .float(1), "dtype": .dtype(.i64)])
    try updateState(step, to: try op(Ops.add.name, [step, one]), when: nil)
    return (seed, step)
  }
}
