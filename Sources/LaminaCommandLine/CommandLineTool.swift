import Foundation
import Lamina

/// The `lamina` command line as a function, so tests run commands in-process.
public enum CommandLineTool {
  static let commands: [CommandEntry] = [
    CommandEntry(CheckCommand.self), CommandEntry(DumpCommand.self),
    CommandEntry(CompileCommand.self),
    CommandEntry(RunCommand.self), CommandEntry(BenchCommand.self),
    CommandEntry(InitCommand.self), CommandEntry(PassesCommand.self), CommandEntry(OpsCommand.self),
    CommandEntry(GradientsCommand.self), CommandEntry(GradcheckCommand.self),
    CommandEntry(TrainCommand.self), CommandEntry(BisectCommand.self),
    CommandEntry(ImportCommand.self),
  ]

  static func usage() -> String {
    // padding(toLength:) also cuts longer names, so the column is as wide as the longest.
    let width = commands.map(\.name.count).max() ?? 0
    let list = commands.map {
      "  \($0.name.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.summary)"
    }
    return """
      usage: lamina <command> [options]

      commands:
      \(list.joined(separator: "\n"))

      Run `lamina <command> --help` for a command's options.
      """
  }

  /// Runs `lamina ARGUMENTS...` and returns the exit status: 0 success, 1 an error in the model or
  /// data, 2 a mistake in the command line.
  public static func run(_ arguments: [String], console: Console) -> Int32 {
    var arguments = arguments
    guard let name = arguments.first else {
      console.error(usage())
      return 2
    }
    arguments.removeFirst()
    if name == "--help" || name == "-h" || name == "help" {
      console.print(usage())
      return 0
    }
    guard let command = commands.first(where: { $0.name == name }) else {
      let suggestion = closestName(to: name, among: commands.map(\.name))
      console.error(
        "lamina: unknown command '\(name)'" + (suggestion.map { "; did you mean '\($0)'?" } ?? ""))
      console.error(usage())
      return 2
    }
    if arguments.contains("--help") || arguments.contains("-h") {
      console.print(command.help)
      return 0
    }
    do {
      return try command.run(arguments, console)
    } catch let error as CompileError {
      console.error(error.rendered)
      return 1
    } catch let error as UsageError {
      console.error("lamina \(name): \(error.message)")
      console.error("run `lamina \(name) --help` for usage")
      return 2
    } catch {
      // Messages quote names from files (a library's signature, a weights file's keys).
      console.error(
        "lamina \(name): error: \(TerminalText.escaped(describe(error), keepingNewlines: true))")
      return 1
    }
  }
}

/// An error as one line for the terminal: Foundation's file errors (a cache folder that cannot be
/// created) as `PATH: reason` rather than their `Error Domain=NSCocoaErrorDomain Code=...` dump.
func describe(_ error: any Error) -> String {
  let nsError = error as NSError
  guard nsError.domain == NSCocoaErrorDomain else { return "\(error)" }
  let path =
    nsError.userInfo[NSFilePathErrorKey] as? String
    ?? (nsError.userInfo[NSURLErrorKey] as? URL)?.path
  var reason = nsError.localizedDescription
  if let underlying = (nsError.userInfo[NSUnderlyingErrorKey] as? any Error).map({ $0 as NSError }),
    underlying.domain == NSPOSIXErrorDomain
  {
    reason = String(cString: strerror(Int32(underlying.code)))
  }
  return path.map { "\($0): \(reason)" } ?? reason
}

/// A command's name, texts and entry point, without existential metatypes.
struct CommandEntry: Sendable {
  var name: String
  var summary: String
  var help: String
  var run: @Sendable ([String], Console) throws -> Int32

  init<C: Command>(_ command: C.Type) {
    name = C.name
    summary = C.summary
    help = C.help
    run = { arguments, console in
      var options = try Options(arguments, spec: C.options)
      return try C.run(&options, console: console)
    }
  }
}
