import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Reads a FIFO to its end on another thread, as `cat fifo` would while a writer writes.
private final class FIFOReader: @unchecked Sendable {
  private let done = DispatchSemaphore(value: 0)
  private var data = Data()

  init(_ path: String) {
    Thread.detachNewThread { [self] in
      if let handle = FileHandle(forReadingAtPath: path) {
        data = handle.readDataToEndOfFile()
        try? handle.close()
      }
      done.signal()
    }
  }

  /// What was read, once the writer closed the FIFO; nil when nothing came within a minute (the
  /// FIFO was replaced instead of written, and the reader waits on it forever).
  func result() -> Data? {
    guard done.wait(timeout: .now() + 60) == .success else { return nil }
    return data
  }
}

private func fileType(_ path: String) -> mode_t? {
  var info = stat()
  guard lstat(path, &info) == 0 else { return nil }
  return info.st_mode & S_IFMT
}

/// Output files: regular files are replaced atomically; links are followed; FIFOs and devices are
/// written in place, never replaced by a regular file.
@Suite("Output files")
struct OutputFileTests {
  @Test("a FIFO is written through and stays a FIFO")
  func fifo() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = directory + "/pipe"
    #expect(mkfifo(path, 0o600) == 0)
    let reader = FIFOReader(path)
    let payload = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0) })
    try AtomicFile.write(payload, to: path)
    #expect(reader.result() == payload)
    #expect(fileType(path) == S_IFIFO)
    // Nothing was left beside it.
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["pipe"])
  }

  @Test("a character device is written in place and stays a device")
  func device() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = directory + "/null"
    // The null device (1, 3), created here: never the system's /dev/null. Needs root.
    guard mknod(path, S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0 else {
      print("skipped: mknod needs root (\(String(cString: strerror(errno))))")
      return
    }
    try AtomicFile.write(Data("discarded".utf8), to: path)
    #expect(fileType(path) == S_IFCHR)
    try SafeTensors.write(
      [("w", Tensor(shape: [2], scalars: [1, 2] as [Float]))], metadata: [:], to: path)
    #expect(fileType(path) == S_IFCHR)
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["null"])
  }

  @Test("a symbolic link is followed: the file it names is replaced, the link stays")
  func symbolicLink() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    try FileManager.default.createDirectory(
      atPath: directory + "/real", withIntermediateDirectories: true)
    try Data("old".utf8).write(to: URL(fileURLWithPath: directory + "/real/file"))
    #expect(symlink("real/file", directory + "/link") == 0)
    #expect(symlink("link", directory + "/link2") == 0)
    try AtomicFile.write(Data("new".utf8), to: directory + "/link2")
    #expect(fileType(directory + "/link") == S_IFLNK)
    #expect(fileType(directory + "/link2") == S_IFLNK)
    #expect(try String(contentsOfFile: directory + "/real/file", encoding: .utf8) == "new")

    // A dangling link names the file to create.
    #expect(symlink("real/created", directory + "/dangling") == 0)
    try AtomicFile.write(Data("made".utf8), to: directory + "/dangling")
    #expect(fileType(directory + "/dangling") == S_IFLNK)
    #expect(try String(contentsOfFile: directory + "/real/created", encoding: .utf8) == "made")

    // A link to itself is refused, not followed forever.
    #expect(symlink("loop", directory + "/loop") == 0)
    #expect(throws: FileError.self) { try AtomicFile.write(Data(), to: directory + "/loop") }
  }

  @Test("a symbolic link to a FIFO writes through the FIFO")
  func linkToFIFO() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    #expect(mkfifo(directory + "/pipe", 0o600) == 0)
    #expect(symlink(directory + "/pipe", directory + "/out") == 0)
    let reader = FIFOReader(directory + "/pipe")
    try AtomicFile.write(Data("through".utf8), to: directory + "/out")
    #expect(reader.result() == Data("through".utf8))
    #expect(fileType(directory + "/pipe") == S_IFIFO)
    #expect(fileType(directory + "/out") == S_IFLNK)
  }

  @Test("a directory is refused with a clear message")
  func directory() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    do {
      try AtomicFile.write(Data("x".utf8), to: directory)
      Issue.record("writing over a directory succeeded")
    } catch let error as FileError {
      #expect(error.description.contains("it is a directory"), "\(error)")
    }
    #expect(fileType(directory) == S_IFDIR)
  }

  @Test("a regular file is replaced atomically and keeps its permissions")
  func regularFile() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let path = directory + "/weights"
    try Data("old".utf8).write(to: URL(fileURLWithPath: path))
    #expect(chmod(path, 0o600) == 0)
    var before = stat()
    #expect(stat(path, &before) == 0)
    try AtomicFile.write(Data("new".utf8), to: path)
    var after = stat()
    #expect(stat(path, &after) == 0)
    #expect(after.st_mode & 0o777 == 0o600)
    // A new inode: the old file was replaced by rename, not rewritten.
    #expect(after.st_ino != before.st_ino)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == "new")
  }

  @Test("temporary files of processes that died are removed; a running one's are kept")
  func staleTemporaryFiles() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let finished = Process()
    finished.executableURL = URL(fileURLWithPath: "/bin/true")
    try finished.run()
    finished.waitUntilExit()
    let dead = finished.processIdentifier
    let stale = directory + "/.ck.safetensors.tmp-\(dead)-12345"
    let live = directory + "/.ck.safetensors.tmp-\(getppid())-777"
    let other = directory + "/.other.tmp-\(dead)-1"
    for path in [stale, live, other] { try Data("x".utf8).write(to: URL(fileURLWithPath: path)) }
    try AtomicFile.write(Data("checkpoint".utf8), to: directory + "/ck.safetensors")
    let names = Set(try FileManager.default.contentsOfDirectory(atPath: directory))
    #expect(
      names == [
        "ck.safetensors", ".ck.safetensors.tmp-\(getppid())-777", ".other.tmp-\(dead)-1",
      ])
  }

  @Test("compile -o FIFO writes the library through it and no header beside it")
  func compileToFIFO() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let model = directory + "/m.lam"
    try """
    model M {
      input x: f32[batch, 4]
      output y = x * 2.0
    }
    """.write(toFile: model, atomically: true, encoding: .utf8)
    let pipe = directory + "/pipe.so"
    #expect(mkfifo(pipe, 0o600) == 0)
    let reader = FIFOReader(pipe)
    let console = Console.capturing()
    let status = CommandLineTool.run(
      ["compile", model, "-o", pipe, "--cache-dir", directory + "/cache"], console: console)
    #expect(status == 0, "\(console.standardError)")
    let library = reader.result() ?? Data()
    #expect(library.prefix(4) == Data([0x7F, 0x45, 0x4C, 0x46]), "an ELF file came through")
    #expect(fileType(pipe) == S_IFIFO)
    #expect(!FileManager.default.fileExists(atPath: directory + "/pipe.h"))
    #expect(console.standardOutput.contains("no header"), "\(console.standardOutput)")
  }
}
