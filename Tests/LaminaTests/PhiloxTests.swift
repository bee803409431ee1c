import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Philox-4x32-10 in Swift (the interpreter's) and in C (`lamina_philox.h`, compiled models') against
/// Random123's published known-answer vectors (`kat_vectors`), and the two against each other on
/// dropout's counters.
@Suite("Philox")
struct PhiloxTests {
  /// Random123's `philox4x32 10` lines: counter (4 words), key (2 words), result (4 words).
  static let knownAnswers: [(counter: [UInt32], key: [UInt32], result: [UInt32])] = [
    ([0, 0, 0, 0], [0, 0], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
    (
      [0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff], [0xffff_ffff, 0xffff_ffff],
      [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
    ),
    (
      [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0],
      [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
    ),
  ]

  /// Dropout counters to compare Swift and C on: (seed, step, stream, block).
  static let dropoutCounters: [(UInt64, UInt64, UInt32, UInt32)] = [
    (0, 0, 0, 0), (42, 7, 3, 1000), (0xdead_beef_0123_4567, 0x1_0000_0002, 17, 0xffff_fffe),
    (UInt64.max, UInt64.max, UInt32.max, UInt32.max),
  ]

  @Test("Swift Philox-4x32-10 gives Random123's known answers")
  func swiftKnownAnswers() {
    for (counter, key, result) in Self.knownAnswers {
      #expect(Philox.block(counter: counter, key: key) == result, "counter \(counter)")
    }
  }

  @Test(
    "C Philox-4x32-10 gives Random123's known answers and Swift's dropout words",
    arguments: TestData.compilers)
  func cKnownAnswers(_ compiler: String) throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try CRuntimeSources.files["lamina_philox.h"]!.write(
      toFile: directory + "/lamina_philox.h", atomically: true, encoding: .utf8)
    var program = """
      #include <inttypes.h>
      #include <stdio.h>
      #include "lamina_philox.h"

      static void print(lamina_philox_block b) {
        printf("%08" PRIx32 " %08" PRIx32 " %08" PRIx32 " %08" PRIx32 "\\n", b.word[0], b.word[1], b.word[2], b.word[3]);
      }

      int main(void) {

      """
    for (counter, key, _) in Self.knownAnswers {
      let words = (counter + key).map { "0x\(String($0, radix: 16))u" }.joined(separator: ", ")
      program += "  print(lamina_philox4x32_10(\(words)));\n"
    }
    for (seed, step, stream, block) in Self.dropoutCounters {
      program +=
        "  print(lamina_dropout_block(UINT64_C(\(seed)), UINT64_C(\(step)), \(stream)u, \(block)u));\n"
    }
    program += "  return 0;\n}\n"
    try program.write(toFile: directory + "/main.c", atomically: true, encoding: .utf8)
    let build = try Self.run(
      [
        compiler, "-std=c11", "-O2", "-Wall", "-Werror", directory + "/main.c", "-o",
        directory + "/kat",
      ],
      in: directory)
    #expect(build.status == 0, "\(build.output)")
    let run = try Self.run([directory + "/kat"], in: directory)
    #expect(run.status == 0)
    let lines = run.output.split(separator: "\n").map(String.init)
    let hex = { (words: [UInt32]) in
      words.map { word in
        let text = String(word, radix: 16)
        return String(repeating: "0", count: 8 - text.count) + text
      }.joined(separator: " ")
    }
    let expected =
      Self.knownAnswers.map { hex($0.result) }
      + Self.dropoutCounters.map { seed, step, stream, block in
        hex(
          Philox.block(
            counter: [
              block, stream, UInt32(truncatingIfNeeded: step),
              UInt32(truncatingIfNeeded: step >> 32),
            ], key: [UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)]))
      }
    #expect(lines == expected)
  }

  @Test("dropout's keep decisions follow the Philox words and the rate's threshold")
  func keepDecisions() {
    let stream = DropoutStream(seed: 5, step: 2, stream: 1, rate: 0.25)
    #expect(stream.threshold == 1 << 30)
    let keeps = stream.keeps(count: 4 * 3 + 2)
    for block in 0..<4 {
      let words = Philox.block(counter: [UInt32(block), 1, 2, 0], key: [5, 0])
      for lane in 0..<4 where block * 4 + lane < keeps.count {
        #expect(keeps[block * 4 + lane] == (words[lane] >= 1 << 30))
      }
    }
    #expect(DropoutStream.threshold(rate: 0) == 0)
    #expect(DropoutStream(seed: 1, step: 1, stream: 0, rate: 0).keeps(count: 100).allSatisfy { $0 })
    #expect(DropoutStream.threshold(rate: 0.5) == 1 << 31)
    #expect(DropoutStream.threshold(rate: 1 - 0x1p-53) == UInt32.max)
  }

  /// Runs a program; output and errors together, through a file (a pipe could fill and block).
  static func run(_ arguments: [String], in directory: String) throws -> (
    status: Int32, output: String
  ) {
    let outputPath = directory + "/output-\(UUID().uuidString)"
    FileManager.default.createFile(atPath: outputPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    process.waitUntilExit()
    try handle.close()
    return (process.terminationStatus, try String(contentsOfFile: outputPath, encoding: .utf8))
  }
}
