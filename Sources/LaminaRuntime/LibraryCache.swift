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

  /// The path of a valid cached library for `key`, or nil.
  public func lookup(key: String) -> String? {
    let library = "\(directory)/\(key).so"
    guard let manifest = try? String(contentsOfFile: "\(directory)/\(key).manifest", encoding: .utf8),
      let data = FileManager.default.contents(atPath: library)
    else { return nil }
    return manifest == LibraryCache.manifest(for: data) ? library : nil
  }

  /// Compiles `source` unless a valid library is cached; returns the library's path and whether it
  /// was compiled now.
  public func library(for source: String, compiler: CCompiler) throws -> (path: String, compiled: Bool) {
    let key = LibraryCache.key(source: source, compiler: compiler)
    if let path = lookup(key: key) { return (path, false) }
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let unique = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
    let sourcePath = "\(directory)/\(key)-\(unique).c"
    let temporaryLibrary = "\(directory)/.\(key)-\(unique).so"
    defer {
      try? FileManager.default.removeItem(atPath: sourcePath)
      try? FileManager.default.removeItem(atPath: temporaryLibrary)
    }
    try AtomicFile.write(Data(source.utf8), to: sourcePath)
    try compiler.compile(sourcePath: sourcePath, outputPath: temporaryLibrary, source: source)
    guard let data = FileManager.default.contents(atPath: temporaryLibrary) else {
      throw FileError(path: temporaryLibrary, reason: "the compiler wrote no library")
    }
    let library = "\(directory)/\(key).so"
    // The library first, then the manifest that vouches for it.
    guard rename(temporaryLibrary, library) == 0 else {
      throw FileError(path: library, reason: "cannot move the compiled library into the cache")
    }
    try AtomicFile.write(Data(LibraryCache.manifest(for: data).utf8), to: "\(directory)/\(key).manifest")
    return (library, true)
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
