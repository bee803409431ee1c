import Lamina

/// `lamina passes`: lists the passes of each pipeline.
enum PassesCommand: Command {
  static let name = "passes"
  static let summary = "List the compiler passes in pipeline order"
  static let help = """
    usage: lamina passes

    Lists every pass with what it does, in the order the pipelines run them: the inference and training
    passes, then the backend passes that run on a copy of the graph just before C generation. Passes
    marked required build what later stages read; --passes keeps them and --disable-pass refuses them.
    """
  static let options = OptionSpec()

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    for (index, pass) in Pipeline.knownPasses.enumerated() {
      var marks: [String] = []
      if Pipeline.codegen.contains(where: { $0.name == pass.name }) { marks.append("backend") }
      if Pipeline.requiredPasses.contains(pass.name) { marks.append("required") }
      let label = marks.isEmpty ? "" : " [\(marks.joined(separator: ", "))]"
      console.print("\(index + 1). \(pass.name)\(label): \(pass.summary)")
    }
    return 0
  }
}
