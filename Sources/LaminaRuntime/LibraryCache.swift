import Foundation
import LaminaSupport

/// A folder of compiled model libraries, keyed by what went into them.
///
/// The key hashes the C source, the compiler path and version, and the flags, so compiling the same
/// model twice is instant. Each library is stored with a manifest holding its size and a checksum of
/// its bytes; a library that does not match (a crash mid-write, a truncated file) is rebuilt. Files
/// land by rename, so readers never see half a library.
public struct LibraryCache: Sendable {
  public var directory: String

  /// `LAMINA_CACHE_DIR`, else `$XDG_CACHE_HOME/lamina`, else `~/.cache/lamina`.
  public static func defaultDirectory() -> String {
    let environment = ProcessInfo.processInfo.environment
    if let directory = environment["LAMINA_CACHE_DIR"], !directory.isEmpty { return directory }
    if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/lamina" }
    return FileManager.default.homeDirectoryForCurrentUser.path + "/.cache/lamina"
  }

  public init(directory: String = LibraryCache.defaultDirectory()) {
    self.directory = directory
  }

  public static func key(source: String, compiler: CCompiler) -> String {
    let material = [source, compiler.path, compiler.version, compiler.flags.joined(separator: " ")]
      .joined(separator: "\u{0}")
    return String(format: "%016llx", StableHash.fnv1a64(material))
      + String(format: "%016llx", StableHash.fnv1a64(String(material.reversed())))
  }

  /// Compiles `source` and links it with the runtime unless a valid library is cached; returns the
  /// library's path and whether it was compiled now.
  ///
  /// The runtime (`runtimeSource`) is compiled once per compiler and flags into a cached object that
  /// every model links, so a model's compile time is that of its own kernels.
  public func library(for source: String, runtimeSource: String, compiler: CCompiler) throws -> (
    path: String, compiled: Bool
  ) {
    let runtimeKey = "runtime-" + LibraryCache.key(source: runtimeSource, compiler: compiler)
    let key = LibraryCache.key(source: source + "\u{0}" + runtimeKey, compiler: compiler)
    if let path = lookup(key: key, extension: "so") { return (path, false) }
    let runtime = try cachedObject(key: runtimeKey, source: runtimeSource, compiler: compiler)
    let path = try build(key: key, extension: "so", source: source) { sourcePath, output in
      try compiler.compile(
        sourcePath: sourcePath, objects: [runtime], outputPath: output, source: source)
    }
    return (path, true)
  }

  private func cachedObject(key: String, source: String, compiler: CCompiler) throws -> String {
    if let path = lookup(key: key, extension: "o") { return path }
    return try build(key: key, extension: "o", source: source) { sourcePath, output in
      try compiler.compileObject(sourcePath: sourcePath, outputPath: output, source: source)
    }
  }

  /// The path of a valid cached file for `key`, or nil.
  public func lookup(key: String, extension fileExtension: String = "so") -> String? {
    let file = "\(directory)/\(key).\(fileExtension)"
    guard
      let manifest = try? String(contentsOfFile: "\(directory)/\(key).manifest", encoding: .utf8),
      let data = FileManager.default.contents(atPath: file)
    else { return nil }
    return manifest == LibraryCache.manifest(for: data) ? file : nil
  }

  /// Writes `source`, runs `make(sourcePath, temporaryOutput)`, and moves the result into the cache
  /// with a manifest that vouches for it.
  private func build(
    key: String, extension fileExtension: String, source: String,
    _ make: (_ sourcePath: String, _ output: String) throws -> Void
  ) throws -> String {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let unique = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
    let sourcePath = "\(directory)/\(key)-\(unique).c"
    let temporary = "\(directory)/.\(key)-\(unique).\(fileExtension)"
    defer {
      try? FileManager.default.removeItem(atPath: sourcePath)
      try? FileManager.default.removeItem(atPath: temporary)
    }
    try AtomicFile.write(Data(source.utf8), to: sourcePath)
    try make(sourcePath, temporary)
    guard let data = FileManager.default.contents(atPath: temporary) else {
      throw FileError(path: temporary, reason: "the compiler wrote nothing")
    }
    let destination = "\(directory)/\(key).\(fileExtension)"
    // The file first, then the manifest that vouches for it.
    guard rename(temporary, destination) == 0 else {
      throw FileError(path: destination, reason: "cannot move the compiled file into the cache")
    }
    try AtomicFile.write(
      Data(LibraryCache.manifest(for: data).utf8), to: "\(directory)/\(key).manifest")
    return destination
  }

  static func manifest(for data: Data) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in data {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    return "bytes \(data.count)\nfnv1a64 \(String(format: "%016llx", hash))\n"
  }
}
