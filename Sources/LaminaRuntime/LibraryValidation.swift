import Foundation
import LaminaSupport

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Checks a file before `dlopen` maps it.
///
/// dlopen trusts the file: a truncated library is mapped past its end and the loader dies with SIGBUS
/// reading it, and a bare name (`lib.so`) is searched for in the system's library paths instead of
/// the current directory. So a library is first checked to be a regular file, an ELF shared object
/// whose headers and loaded segments lie inside the file, that exports the Lamina ABI symbol.
enum LibraryValidation {
  /// The path to give dlopen for `path`: always a path with a directory, so it names that file.
  static func loadablePath(_ path: String) -> String {
    path.contains("/") ? path : "./" + path
  }

  /// Throws `RunError` saying what is wrong with the file at `path`, if anything.
  static func validate(_ path: String) throws {
    var info = stat()
    guard stat(path, &info) == 0 else {
      throw RunError("cannot load \(path): \(String(cString: strerror(errno)))")
    }
    guard info.st_mode & S_IFMT == S_IFREG else {
      throw RunError("cannot load \(path): not a regular file")
    }
    #if os(Linux)
      guard let data = FileManager.default.contents(atPath: path) else {
        throw RunError("cannot load \(path): the file cannot be read")
      }
      if let problem = elfProblem(data) {
        throw RunError("\(path) is not a Lamina model library: \(problem)")
      }
    #endif
  }

  /// What is wrong with `data` as a 64-bit little-endian ELF shared object exporting the ABI symbol;
  /// nil when nothing is.
  static func elfProblem(_ data: Data) -> String? {
    let bytes = [UInt8](data)
    let size = UInt64(bytes.count)
    guard bytes.count >= 64, bytes[0..<4] == [0x7F, 0x45, 0x4C, 0x46] else {
      return "not an ELF file (\(bytes.count) bytes)"
    }
    guard bytes[4] == 2, bytes[5] == 1 else { return "not a 64-bit little-endian ELF file" }
    func integer(_ offset: UInt64, _ width: Int) -> UInt64? {
      guard offset <= size, UInt64(width) <= size - offset else { return nil }
      var value: UInt64 = 0
      for index in (0..<width).reversed() {
        value = value << 8 | UInt64(bytes[Int(offset) + index])
      }
      return value
    }
    guard integer(16, 2) == 3 else { return "not a shared object (ELF type \(integer(16, 2)!))" }
    /// Whether `count` entries of `entrySize` bytes from `offset` lie inside the file.
    func inside(_ offset: UInt64, _ count: UInt64, _ entrySize: UInt64) -> Bool {
      let (length, overflow) = count.multipliedReportingOverflow(by: entrySize)
      return !overflow && offset <= size && length <= size - offset
    }
    let programHeaders = integer(32, 8)!
    let sectionHeaders = integer(40, 8)!
    let programEntrySize = integer(54, 2)!
    let programCount = integer(56, 2)!
    let sectionEntrySize = integer(58, 2)!
    let sectionCount = integer(60, 2)!
    guard programEntrySize >= 56, inside(programHeaders, programCount, programEntrySize),
      inside(sectionHeaders, sectionCount, sectionEntrySize)
    else {
      return "its headers point past the end of the file (\(bytes.count) bytes): it is truncated"
    }
    for index in 0..<programCount {
      let header = programHeaders + index * programEntrySize
      let type = integer(header, 4)!
      let offset = integer(header + 8, 8)!
      let fileSize = integer(header + 32, 8)!
      // PT_LOAD segments are mapped from the file; one past its end is what SIGBUS comes from.
      if type == 1, !inside(offset, fileSize, 1) {
        return
          "a loaded segment ends past the end of the file (\(bytes.count) bytes): it is truncated"
      }
    }
    let found = data.range(of: Data("lamina_abi_version\0".utf8)) != nil
    return found ? nil : "it does not export lamina_abi_version"
  }
}
