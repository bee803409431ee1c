import Foundation

/// Locations inside the repository, found from this file's path so tests run from any directory.
public enum RepositoryPaths {
  /// The repository root (the folder holding Package.swift).
  public static let root: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  public static func path(_ relative: String) -> String {
    root.appendingPathComponent(relative).path
  }

  /// Files in a repository folder with the given extension, sorted.
  public static func files(in relative: String, withExtension ext: String) -> [String] {
    let directory = path(relative)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.filter { $0.hasSuffix("." + ext) }.sorted().map { directory + "/" + $0 }
  }

  /// A fresh temporary directory for one test.
  public static func temporaryDirectory() throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "lamina-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
  }
}
