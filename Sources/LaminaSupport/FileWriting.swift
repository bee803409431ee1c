import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Writing files so that a crash or a full disk never leaves a half-written file behind.
public enum AtomicFile {
  /// Writes `data` to `path`.
  ///
  /// A regular file (or a new one) is written to a temporary file beside it, then renamed over it:
  /// rename(2) within one directory is atomic, so readers see the old file or the new one, never a mix.
  /// A symbolic link is followed, so the file it names is written and the link stays. A FIFO or a
  /// device (`/dev/null`, `/dev/stdout`) cannot be replaced without destroying it, so it is written in
  /// place; a directory or a socket is refused.
  public static func write(_ data: Data, to path: String) throws {
    let target = try resolvingLinks(path)
    switch try kind(of: target, for: path) {
    case .stream:
      try writeInPlace(data, to: target, for: path)
      return
    case .regular, .missing:
      break
    }
    let url = URL(fileURLWithPath: target)
    let directory = url.deletingLastPathComponent()
    removeStaleTemporaryFiles(of: url.lastPathComponent, in: directory.path)
    let temporary = directory.appendingPathComponent(
      ".\(url.lastPathComponent)\(temporaryMarker)\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
    )
    do {
      try data.write(to: temporary)
      // The replacement keeps the permissions of the file it replaces (rename would drop them).
      var existing = stat()
      if stat(target, &existing) == 0 {
        _ = chmod(temporary.path, existing.st_mode & 0o7777)
      }
      if rename(temporary.path, target) != 0 {
        let reason = String(cString: strerror(errno))
        throw FileError(path: path, reason: "cannot replace the file: \(reason)")
      }
    } catch {
      try? FileManager.default.removeItem(at: temporary)
      if let error = error as? FileError { throw error }
      throw FileError(path: path, reason: "cannot write: \(error.localizedDescription)")
    }
  }

  /// True when `path` (after following symbolic links) is a FIFO or a device, which `write(_:to:)`
  /// writes in place: a file derived from its name (`/dev/null.h`) makes no sense then.
  public static func isStream(_ path: String) -> Bool {
    guard let target = try? resolvingLinks(path) else { return false }
    return (try? kind(of: target, for: path)) == .stream
  }

  /// Throws when `write(_:to:)` to `path` would certainly fail: its folder is missing or not writable,
  /// or it is a directory. For checking outputs before a long computation rather than after it.
  public static func checkWritable(_ path: String) throws {
    let target = try resolvingLinks(path)
    if try kind(of: target, for: path) == .stream {
      guard access(target, W_OK) == 0 else {
        throw FileError(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
      }
      return
    }
    let directory = URL(fileURLWithPath: target).deletingLastPathComponent().path
    var info = stat()
    guard stat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
      throw FileError(path: path, reason: "cannot write: the folder \(TerminalText.escaped(directory)) does not exist")
    }
    guard access(directory, W_OK | X_OK) == 0 else {
      throw FileError(
        path: path,
        reason: "cannot write in the folder \(TerminalText.escaped(directory)): \(String(cString: strerror(errno)))")
    }
  }

  /// What temporary files are named after: `.NAME.tmp-PID-RANDOM`.
  static let temporaryMarker = ".tmp-"

  private enum Kind { case regular, missing, stream }

  private static func kind(of target: String, for path: String) throws -> Kind {
    var info = stat()
    guard lstat(target, &info) == 0 else {
      if errno == ENOENT { return .missing }
      throw FileError(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
    }
    switch info.st_mode & S_IFMT {
    case S_IFREG: return .regular
    case S_IFIFO, S_IFCHR, S_IFBLK: return .stream
    case S_IFDIR: throw FileError(path: path, reason: "cannot write: it is a directory")
    default:
      throw FileError(
        path: path, reason: "cannot write: it is not a regular file, a device or a FIFO")
    }
  }

  /// The file `path` names once every symbolic link on its last component is followed (a dangling
  /// link gives the file it would name, which is then created).
  private static func resolvingLinks(_ path: String) throws -> String {
    var current = path
    for _ in 0..<40 {
      var info = stat()
      guard lstat(current, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { return current }
      var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
      let length = readlink(current, &buffer, buffer.count - 1)
      guard length >= 0 else {
        throw FileError(
          path: path, reason: "cannot follow the link: \(String(cString: strerror(errno)))")
      }
      let destination = String(
        decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
      current =
        destination.hasPrefix("/")
        ? destination
        : URL(fileURLWithPath: current).deletingLastPathComponent().appendingPathComponent(
          destination
        ).path
    }
    throw FileError(path: path, reason: "cannot write: too many levels of symbolic links")
  }

  /// Writes `data` through an existing FIFO or device, without creating or replacing anything.
  private static func writeInPlace(_ data: Data, to target: String, for path: String) throws {
    let descriptor = open(target, O_WRONLY | O_NOCTTY)
    guard descriptor >= 0 else {
      throw FileError(
        path: path, reason: "cannot open for writing: \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
      var offset = 0
      while offset < bytes.count {
        let written = posixWrite(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 {
          if errno == EINTR { continue }
          throw FileError(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
        }
        offset += written
      }
    }
  }

  /// Removes temporary files of `name` left by processes that no longer run (a `kill -9` between
  /// writing and renaming), so repeated interruptions do not pile them up beside a checkpoint.
  private static func removeStaleTemporaryFiles(of name: String, in directory: String) {
    let prefix = "." + name + temporaryMarker
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
      return
    }
    for entry in entries where entry.hasPrefix(prefix) {
      let rest = entry.dropFirst(prefix.count)
      guard let dash = rest.firstIndex(of: "-"), let pid = pid_t(rest[..<dash]), pid > 0,
        UInt32(rest[rest.index(after: dash)...]) != nil
      else { continue }
      // Signal 0 checks whether the process exists; ESRCH: it does not.
      if pid != getpid(), kill(pid, 0) != 0, errno == ESRCH {
        try? FileManager.default.removeItem(atPath: directory + "/" + entry)
      }
    }
  }
}

#if canImport(Glibc)
  private let posixWrite = Glibc.write
#elseif canImport(Darwin)
  private let posixWrite = Darwin.write
#endif

/// A file that could not be read or written, or whose contents are malformed.
public struct FileError: Error, Sendable, CustomStringConvertible {
  public var path: String
  public var reason: String
  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }
  /// The path escaped for the terminal (a newline in a file name must not forge an error line).
  public var description: String { "\(TerminalText.escaped(path)): \(reason)" }
}
