import Lamina

/// `lamina ops`: lists the ops, or prints the generated op table reference.
enum OpsCommand: Command {
  static let name = "ops"
  static let summary = "List every op with its signature (--markdown: the full reference)"
  static let help = """
    usage: lamina ops [--markdown]

    Lists every op with its signature. --markdown prints the reference in ir-specs/ops.md: ops, layers,
    initializers and optimizers, generated from the tables the compiler uses.
    """
  static let options = OptionSpec(switches: ["--markdown"])

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    if options.isSet("--markdown") {
      console.print(Reference.markdown(), terminator: "")
      return 0
    }
    let width = OpRegistry.all.map(\.signature.count).max() ?? 0
    for op in OpRegistry.all {
      console.print(
        op.signature.padding(toLength: width + 2, withPad: " ", startingAt: 0) + op.summary)
    }
    return 0
  }
}
