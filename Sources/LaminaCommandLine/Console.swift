import Foundation

/// Where a command writes: the terminal, or buffers when tests run commands in-process.
public final class Console: @unchecked Sendable {
  private let lock = NSLock()
  private let captures: Bool
  public private(set) var standardOutput = ""
  public private(set) var standardError = ""

  /// A console that writes through to the process's standard output and error.
  public static func terminal() -> Console { Console(captures: false) }
  /// A console that keeps everything written, for tests.
  public static func capturing() -> Console { Console(captures: true) }

  private init(captures: Bool) { self.captures = captures }

  public func print(_ text: String, terminator: String = "\n") {
    write(text + terminator, toError: false)
  }

  public func error(_ text: String, terminator: String = "\n") {
    write(text + terminator, toError: true)
  }

  /// True for a console that keeps what is written (tests), which is never a terminal.
  public var isCapturing: Bool { captures }

  private func write(_ text: String, toError: Bool) {
    lock.lock()
    defer { lock.unlock() }
    if captures {
      if toError { standardError += text } else { standardOutput += text }
    } else {
      (toError ? FileHandle.standardError : FileHandle.standardOutput).write(Data(text.utf8))
    }
  }
}
