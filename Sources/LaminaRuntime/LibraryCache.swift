import Foundation
import LaminaSupport

/// One C translation unit of a library: a file, compiled with its own flags.
public struct TranslationUnit: Sendable {
  /// The file name in the build folder (`model.c`, `lamina_gemm.c`); units may share a file.
  public var file: String
  /// The C text.
  public var source: String
  /// The target's and the unit's flags (the user's come after them, from the compiler).
  public var flags: [String]
  /// What the timings call it: `model.c [x86-64-v4]`.
  public var label: String
  /// Runtime units are cached as objects of their own and shared by every library that needs them.
  public var shared: Bool

  public init(file: String, source: String, flags: [String], label: String, shared: Bool) {
    self.file = file
    self.source = source
    self.flags = flags
    self.label = label
    self.shared = shared
  }
}

/// A folder of compiled model libraries, keyed by what went into them.
///
/// The key hashes the C sources and headers, the compiler path and version, the flags and the target,
/// so compiling the same model twice is instant. Each library is stored with a manifest holding its
/// size and a checksum of its bytes; a library that does not match (a crash mid-write, a truncated
/// file) is rebuilt. Files land by rename, so readers never see half a library.
public struct LibraryCache: Sendable {
  public var directory: String
  /// Whether a cache that cannot be written falls back to a temporary folder (not the fallback's).
  private var fallsBack = true

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

  /// A 128-bit hex key for what went into a file (two FNV-1a hashes, of the text and its reverse).
  public static func key(_ parts: [String]) -> String {
    let material = parts.joined(separator: "\u{0}")
    return String(format: "%016llx", StableHash.fnv1a64(material))
      + String(format: "%016llx", StableHash.fnv1a64(String(material.reversed())))
  }

  /// Compiles the units (those not cached, in parallel) and links them into a library, unless a
  /// valid library for them is cached; returns the library's path, whether it was compiled now, and
  /// the time of each compiler call and of the link.
  ///
  /// `headers` are written next to the units, which include them. `target` (the target and what it
  /// resolved to) is part of every key. Shared units (the runtime) are compiled once per compiler,
  /// flags and target into cached objects, so a model's compile time is that of its own code.
  public func library(
    units: [TranslationUnit], headers: [String: String], target: String, compiler: CCompiler
  ) throws -> (path: String, compiled: Bool, timings: [StageTiming]) {
    let headerMaterial = headers.sorted { $0.key < $1.key }.map { $0.key + "\u{0}" + $0.value }
    let base = [compiler.path, compiler.version, compiler.flags.joined(separator: " "), target]
    let unitKeys = units.map { unit in
      (unit.shared ? "runtime-" : "unit-")
        + LibraryCache.key(
          base + headerMaterial + [unit.file, unit.source, unit.flags.joined(separator: " ")])
    }
    let key = LibraryCache.key(base + unitKeys)
    if let path = lookup(key: key, extension: "so") { return (path, false, []) }

    let unique = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
    let buildDirectory = "\(directory)/build-\(key)-\(unique)"
    // A cache folder that cannot be created (a file in the way) is the caller's mistake, reported
    // as such; one that exists but cannot be written (read-only) only costs the caching.
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    if mkdir(buildDirectory, 0o700) != 0 {
      let reason = String(cString: strerror(errno))
      guard fallsBack else {
        throw FileError(path: directory, reason: "cannot create a build folder: \(reason)")
      }
      var fallback = LibraryCache.temporaryFallback()
      fallback.fallsBack = false
      LibraryCache.note(
        "cannot write the library cache \(TerminalText.escaped(directory)) (\(reason)); compiling in \(TerminalText.escaped(fallback.directory))"
      )
      return try fallback.library(
        units: units, headers: headers, target: target, compiler: compiler)
    }
    defer { try? FileManager.default.removeItem(atPath: buildDirectory) }
    for (name, text) in headers {
      try AtomicFile.write(Data(text.utf8), to: "\(buildDirectory)/\(name)")
    }
    var written: Set<String> = []
    for unit in units where !written.contains(unit.file) {
      written.insert(unit.file)
      try AtomicFile.write(Data(unit.source.utf8), to: "\(buildDirectory)/\(unit.file)")
    }

    // Cached runtime objects are used as they are; the rest compile in parallel.
    var objects: [String?] = units.indices.map { index in
      units[index].shared ? lookup(key: unitKeys[index], extension: "o") : nil
    }
    // Largest first, so no long compile starts last while the other core idles.
    let pending = units.indices.filter { objects[$0] == nil }.sorted {
      units[$0].source.count > units[$1].source.count
    }
    let results = ParallelResults<Result<StageTiming, Error>>(count: pending.count)
    DispatchQueue.concurrentPerform(iterations: pending.count) { position in
      let index = pending[position]
      let unit = units[index]
      results[position] = Result {
        try StageTiming.measure("cc \(unit.label)") {
          try compiler.compileObject(
            sourcePath: "\(buildDirectory)/\(unit.file)",
            flags: unit.flags + ["-I", buildDirectory],
            outputPath: "\(buildDirectory)/\(unitKeys[index]).o", source: unit.source)
        }.1
      }
    }
    var timings: [StageTiming] = []
    for (position, index) in pending.enumerated() {
      timings.append(try results[position]!.get())
      let object = "\(buildDirectory)/\(unitKeys[index]).o"
      objects[index] =
        units[index].shared ? try store(object, key: unitKeys[index], extension: "o") : object
    }
    let library = "\(buildDirectory)/\(key).so"
    let (_, linkTime) = try StageTiming.measure("link") {
      try compiler.link(objects: objects.map { $0! }, outputPath: library)
    }
    timings.append(linkTime)
    return (try store(library, key: key, extension: "so"), true, timings)
  }

  /// A new folder of the system's temporary directory, for a compilation that cannot use the cache;
  /// its name is unpredictable, so no other user can have placed a library in it.
  static func temporaryFallback() -> LibraryCache {
    LibraryCache(
      directory: FileManager.default.temporaryDirectory.appendingPathComponent(
        "lamina-\(UUID().uuidString)"
      ).path)
  }

  /// A note on standard error, escaped for the terminal (the path is the user's).
  static func note(_ text: String) {
    FileHandle.standardError.write(Data("lamina: note: \(TerminalText.escaped(text))\n".utf8))
  }

  /// Moves a freshly built file into the cache, then writes the manifest that vouches for it.
  private func store(_ file: String, key: String, extension fileExtension: String) throws -> String
  {
    guard let data = FileManager.default.contents(atPath: file) else {
      throw FileError(path: file, reason: "the compiler wrote nothing")
    }
    let destination = "\(directory)/\(key).\(fileExtension)"
    guard rename(file, destination) == 0 else {
      throw FileError(path: destination, reason: "cannot move the compiled file into the cache")
    }
    try AtomicFile.write(
      Data(LibraryCache.manifest(for: data).utf8), to: "\(directory)/\(key).manifest")
    return destination
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

  static func manifest(for data: Data) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in data {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    return "bytes \(data.count)\nfnv1a64 \(String(format: "%016llx", hash))\n"
  }
}

/// One slot per parallel job, each written by exactly one job.
final class ParallelResults<Value>: @unchecked Sendable {
  private var values: [Value?]
  private let lock = NSLock()

  init(count: Int) { values = Array(repeating: nil, count: count) }

  subscript(index: Int) -> Value? {
    get { lock.withLock { values[index] } }
    set { lock.withLock { values[index] = newValue } }
  }
}
