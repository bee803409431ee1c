import Lamina

/// `lamina init FILE -o W.safetensors`: writes the initial weights.
enum InitCommand: Command {
  static let name = "init"
  static let summary = "Write a model's initial weights to a .safetensors file"
  static let help = """
    usage: lamina init FILE -o W.safetensors [--seed S] [--model NAME]

    Draws every parameter from its initializer. The same seed gives the same weights on every machine;
    each parameter has its own stream, so adding a layer does not change the others. Model state
    (batch norm's running statistics, the dropout generator's seed and step) is written too, at its
    initial value, so the file holds everything a trained model's weights file does.
    """
  static let options = OptionSpec(valued: ["-o", "--seed", "--model"])

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    guard let output = options.value("-o") else { throw UsageError("missing -o W.safetensors") }
    let model = try loadModel(path, modelName: options.value("--model"), console: console)
    let seed = try options.seed()
    let parameters = try model.initialParameters(seed: seed)
    let state = try model.graph.initialModelState()
    try SafeTensors.write(
      parameters.merging(state) { parameter, _ in parameter }.sorted { $0.key < $1.key }.map {
        ($0.key, $0.value)
      },
      metadata: ["model": model.graph.name, "seed": String(seed), "written_by": "lamina init"],
      to: output)
    let stateNote = state.isEmpty ? "" : " and \(state.count) model state tensors"
    console.print("wrote \(parameters.count) parameters\(stateNote) to \(TerminalText.escaped(output))")
    return 0
  }
}
