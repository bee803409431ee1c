import Foundation

/// Writing files so that a crash or a full disk never leaves a half-written file behind.
public enum AtomicFile {
  /// Writes `data` to a temporary file beside `path`, then renames it over `path`.
  ///
  /// rename(2) within one directory is atomic: readers see the old file or the new one, never a mix.
  public static func write(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent()
    let temporary = directory.appendingPathComponent(
      ".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
    )
    do {
      try data.write(to: temporary)
      if rename(temporary.path, url.path) != 0 {
        let reason = String(cString: strerror(errno))
        throw FileError(path: path, reason: "cannot replace the file: \(reason)")
      }
    } catch {
      try? FileManager.default.removeItem(at: temporary)
      if let error = error as? FileError { throw error }
      throw FileError(path: path, reason: "cannot write: \(error.localizedDescription)")
    }
  }
}

/// A file that could not be read or written, or whose contents are malformed.
public struct FileError: Error, Sendable, CustomStringConvertible {
  public var path: String
  public var reason: String
  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }
  public var description: String { "\(path): \(reason)" }
}
