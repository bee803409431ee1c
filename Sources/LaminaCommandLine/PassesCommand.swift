import Lamina

/// `lamina passes`: lists the passes of each pipeline.
enum PassesCommand: Command {
  static let name = "passes"
  static let summary = "List the compiler passes in pipeline order"
  static let help =
    "usage: lamina passes\n\nLists every pass with what it does, in the order the pipeline runs them."
  static let options = OptionSpec()

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    for (index, pass) in Pipeline.allPasses.enumerated() {
      console.print("\(index + 1). \(pass.name): \(pass.summary)")
    }
    return 0
  }
}
