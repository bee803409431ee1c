import Lamina

/// `lamina check FILE...`: reports every problem in model files.
enum CheckCommand: Command {
  static let name = "check"
  static let summary = "Check model files and report every error"
  static let help = """
    usage: lamina check FILE... [--model NAME]

    Parses, lowers and type-checks each file, printing every error and warning with its location;
    a model with training steps is also differentiated, as `lamina compile --train` would.
    Exits 1 when any file has an error.
    """
  static let options = OptionSpec(valued: ["--model"])

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    guard !options.positional.isEmpty else { throw UsageError("missing the model file") }
    var status: Int32 = 0
    for path in options.positional {
      do {
        let model = try loadModel(path, modelName: options.value("--model"), console: console)
        let graph = model.graph
        if !graph.trainSteps.isEmpty {
          // What `compile --train` and `train` would reject (a step with no parameter to update, a
          // loss that cannot be differentiated) is an error here too.
          _ = try Model(
            contentsOf: path, modelName: options.value("--model"), pipeline: Pipeline.training)
        }
        console.print(
          "\(TerminalText.escaped(path)): ok: model \(graph.name), \(graph.inputs.count) inputs, \(graph.params.count) parameters, \(graph.nodes.count) nodes"
        )
      } catch let error as CompileError {
        console.error(error.rendered)
        let count = error.errors.count
        console.error("\(TerminalText.escaped(path)): \(count) error\(count == 1 ? "" : "s")")
        status = 1
      } catch {
        console.error(TerminalText.escaped("\(error)", keepingNewlines: true))
        status = 1
      }
    }
    return status
  }
}
