import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// `--passes` and `--disable-pass`, on the commands that run a pipeline.
@Suite("Command line pass selection")
struct CommandLinePassSelectionTests {
  struct Result {
    var status: Int32
    var output: String
    var errors: String
  }

  func lamina(_ arguments: String...) -> Result {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return Result(status: status, output: console.standardOutput, errors: console.standardError)
  }

  /// A graph where every simplification pass has something to do.
  static let source = """
    graph @Selection {
      input %x : f32[batch, 4]
      input %w : f32[3, 4]
      %one = constant() {value = 1.0}
      %two = constant() {value = 2.0}
      %half = div(%one, %two)
      %scaled = mul(%x, %half)
      %same = mul(%scaled, %one)
      %wt = transpose(%w)
      %y = matmul(%same, %wt)
      output y = %y
    }
    """

  func modelFile() throws -> String {
    let path = try RepositoryPaths.temporaryDirectory() + "/selection.ir"
    try Self.source.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  /// The pass names `dump --after all` reports, in order.
  func passesRun(_ result: Result) -> [String] {
    result.output.split(separator: "\n").filter { $0.hasPrefix("// after ") }.map {
      String($0.dropFirst("// after ".count))
    }
  }

  @Test("--disable-pass skips passes, repeated or comma-separated")
  func disablePass() throws {
    let path = try modelFile()
    let all = lamina("dump", path, "--after", "all")
    #expect(all.status == 0, "\(all.errors)")
    #expect(passesRun(all) == (Pipeline.training + Pipeline.codegen).map(\.name))

    let some = lamina(
      "dump", path, "--after", "all", "--disable-pass", "simplify,cse", "--disable-pass",
      "transpose-fold,fusion")
    #expect(some.status == 0, "\(some.errors)")
    #expect(
      passesRun(some) == [
        "shape-inference", "hoist", "autodiff", "hoist", "optimizer", "constant-fold", "dce",
        "mode-specialize", "scale-fold", "decompose", "memory-plan",
      ])

    // Without simplify and transpose-fold, the final IR keeps the multiplication by one and the
    // transpose; with them, neither is left.
    let kept = lamina("dump", path, "--disable-pass", "simplify", "--disable-pass=transpose-fold")
    #expect(kept.status == 0, "\(kept.errors)")
    #expect(kept.output.contains("%same = mul(%scaled, %one)"))
    #expect(kept.output.contains("transpose(%w)"))
    let simplified = lamina("dump", path)
    #expect(simplified.status == 0, "\(simplified.errors)")
    #expect(!simplified.output.contains("mul(%scaled, %one)"))
    #expect(!simplified.output.contains("transpose("))
    #expect(simplified.output.contains("%y = matmul(%scaled, %w) {transpose_b = true}"))
  }

  @Test(
    "--passes runs exactly the listed optional passes, in pipeline order, and the required ones")
  func passesList() throws {
    let path = try modelFile()
    let result = lamina("dump", path, "--after", "all", "--passes", "dce,constant-fold")
    #expect(result.status == 0, "\(result.errors)")
    #expect(
      passesRun(result) == ["shape-inference", "autodiff", "optimizer", "constant-fold", "dce"])
    #expect(result.output.contains("%half = constant() {value = 0.5} : f32[]"))
    let backend = lamina("dump", path, "--after", "all", "--passes", "cse,fusion")
    #expect(backend.status == 0, "\(backend.errors)")
    #expect(passesRun(backend) == ["shape-inference", "autodiff", "optimizer", "cse", "fusion"])

    let none = lamina("dump", path, "--after", "all", "--passes", "")
    #expect(none.status == 0, "\(none.errors)")
    #expect(passesRun(none) == ["shape-inference", "autodiff", "optimizer"])
  }

  @Test("unknown pass names and required passes are usage errors")
  func errors() throws {
    let path = try modelFile()
    let typo = lamina("dump", path, "--disable-pass", "simplfy")
    #expect(typo.status == 2)
    #expect(typo.errors.contains("no pass named 'simplfy'"))
    #expect(typo.errors.contains("did you mean 'simplify'?"))

    let unknown = lamina("dump", path, "--passes", "cse,fold-everything")
    #expect(unknown.status == 2)
    #expect(unknown.errors.contains("no pass named 'fold-everything'"))

    let required = lamina("dump", path, "--disable-pass", "shape-inference")
    #expect(required.status == 2)
    #expect(required.errors.contains("cannot disable 'shape-inference'"))

    let training = lamina(
      "gradcheck", RepositoryPaths.path("examples/digits_mlp.lam"), "--disable-pass", "autodiff")
    #expect(training.status == 2)
    #expect(training.errors.contains("cannot disable 'autodiff'"))

    let notRun = lamina("dump", path, "--after", "cse", "--disable-pass", "cse")
    #expect(notRun.status == 2)
    #expect(notRun.errors.contains("pass 'cse' does not run"))
  }

  @Test("run and gradients accept the options and give the same results without the passes")
  func otherCommands() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let modelPath = RepositoryPaths.path("examples/digits_mlp.lam")
    let x = Tensor(shape: [2, 64], scalars: (0..<128).map { Float($0) / 128 })
    let labels = Tensor(shape: [2], scalars: [3, 7] as [Int32])
    try NPY.write(x, to: directory + "/x.npy")
    try NPY.write(labels, to: directory + "/label.npy")
    for (index, selection) in [[], ["--passes", ""], ["--disable-pass", "cse,dce"]].enumerated() {
      let result = CommandLineTool.run(
        [
          "gradients", modelPath, "--input", "x=\(directory)/x.npy", "--input",
          "label=\(directory)/label.npy", "-o", "\(directory)/g\(index).safetensors",
        ] + selection, console: Console.capturing())
      #expect(result == 0)
      let run = CommandLineTool.run(
        [
          "run", modelPath, "--interpret", "--input", "x=\(directory)/x.npy", "--output",
          "probs=\(directory)/p\(index).npy",
        ] + selection, console: Console.capturing())
      #expect(run == 0)
    }
    let reference = try SafeTensors.readDictionary(contentsOf: directory + "/g0.safetensors")
    let probabilities = try NPY.read(contentsOf: directory + "/p0.npy")
    for index in 1...2 {
      #expect(
        try SafeTensors.readDictionary(contentsOf: directory + "/g\(index).safetensors")
          == reference)
      #expect(try NPY.read(contentsOf: directory + "/p\(index).npy") == probabilities)
    }
  }

  @Test("passes lists every pass, marking required and backend ones")
  func passesCommand() {
    let result = lamina("passes")
    #expect(result.status == 0)
    let lines = result.output.split(separator: "\n")
    #expect(lines.count == Pipeline.knownPasses.count)
    #expect(lines.contains { $0.hasPrefix("1. shape-inference [required]:") })
    #expect(lines.contains { $0.contains("simplify:") && !$0.contains("[") })
    for pass in Pipeline.codegen {
      #expect(lines.contains { $0.contains("\(pass.name) [backend]") })
    }
  }
}
