import Foundation
import Lamina

/// `lamina run FILE --interpret`: evaluates a model on `.npy` inputs.
enum RunCommand: Command {
  static let name = "run"
  static let summary = "Run a model on .npy inputs and write .npy outputs"
  static let help = """
    usage: lamina run FILE.lam --interpret [--weights W.safetensors | --seed S]
                      --input NAME=FILE.npy... [--output NAME=FILE.npy...] [--model NAME]

    Evaluates the model with the reference interpreter. Without --weights the initializers are used
    (with --seed). Inputs the requested outputs do not need (a label, at inference) may be given and
    are ignored. Without --output, every output is summarized on standard output.
    """
  static let options = OptionSpec(
    valued: ["--weights", "--seed", "--model"], repeatable: ["--input", "--output"],
    switches: ["--interpret"])

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    guard options.isSet("--interpret") else {
      throw UsageError("only the reference interpreter exists so far: pass --interpret")
    }
    let model = try loadModel(path, modelName: options.value("--model"), console: console)
    let graph = model.graph
    var inputs: [String: Tensor] = [:]
    for (name, file) in try options.pairs("--input") {
      guard graph.inputs.contains(where: { graph[$0.value].name == name }) else {
        let names = graph.inputs.map { graph[$0.value].name }
        throw UsageError(
          "the model has no input '\(name)' (inputs: \(names.joined(separator: ", ")))"
            + (closestName(to: name, among: names).map { "; did you mean '\($0)'?" } ?? ""))
      }
      inputs[name] = try NPY.read(contentsOf: file)
    }
    var requested = try options.pairs("--output")
    if requested.isEmpty { requested = graph.outputs.map { ($0.name, "") } }
    let parameters = try loadParameters(model, weightsPath: options.value("--weights"), seed: try options.seed())
    let results = try model.interpret(inputs: inputs, parameters: parameters, outputs: requested.map(\.name))
    for (name, file) in requested {
      let tensor = results[name]!
      if file.isEmpty {
        console.print("\(name): \(tensor)")
      } else {
        try NPY.write(tensor, to: file)
        console.print("wrote \(name) \(tensor.typeDescription) to \(file)")
      }
    }
    return 0
  }
}
