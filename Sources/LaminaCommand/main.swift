import Foundation
import LaminaCommandLine

// The `lamina` executable; the commands live in LaminaCommandLine so tests can run them in-process.
exit(CommandLineTool.run(Array(CommandLine.arguments.dropFirst()), console: .terminal()))
