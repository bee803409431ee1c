import Foundation
import Lamina
import LaminaCommandLine
import LaminaTestSupport
import Testing

/// The smaller findings of the hardening review (issue 13): each reproduced, then fixed.
@Suite("Hardening")
struct HardeningTests {
  struct Result {
    var status: Int32
    var output: String
    var errors: String
  }

  func lamina(_ arguments: [String]) -> Result {
    let console = Console.capturing()
    let status = CommandLineTool.run(arguments, console: console)
    return Result(status: status, output: console.standardOutput, errors: console.standardError)
  }

  func lamina(_ arguments: String...) -> Result { lamina(arguments) }

  func write(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
  }

  func options(_ directory: String) -> CompileOptions {
    var options = CompileOptions()
    options.cacheDirectory = directory + "/cache"
    return options
  }

  static let labelOnlySymbol = """
    model M {
      input x: f32[2, 4]
      input target: f32[batch]
      output y = x * 2.0
      loss = mean(target * target)
    }
    """

  @Test("compiled forward runs when a symbol appears only in an input the outputs do not use")
  func symbolOnlyInUnusedInput() throws {
    let directory = try RepositoryPaths.temporaryDirectory()
    let model = try Model(source: Self.labelOnlySymbol)
    let x = Tensor(shape: [2, 4], scalars: (0..<8).map { Float($0) - 3 })
    let target = Tensor(shape: [3], scalars: [1, 2, 3] as [Float])
    let expected = try model.interpret(inputs: ["x": x], parameters: [:], outputs: ["y"])
    let compiled = try model.compile(options: options(directory))
    #expect(try compiled.forward(["x": x]) == expected)
    #expect(try compiled.forward(["x": x, "target": target]) == expected)
    // The loss needs the symbol: without the input that binds it, evaluating is still an error.
    #expect(throws: RunError.self) { _ = try compiled.evaluate(["x": x]) }
    let (_, losses) = try compiled.evaluate(["x": x, "target": target])
    #expect(losses["loss"] == Tensor(scalar: 14.0 / 3, dtype: .f32))

    // Through `lamina run`, which gives the compiled forward only the inputs it uses.
    try write(Self.labelOnlySymbol, to: directory + "/m.lam")
    try NPY.write(x, to: directory + "/x.npy")
    try NPY.write(target, to: directory + "/target.npy")
    let result = lamina(
      "run", directory + "/m.lam", "--input", "x=\(directory)/x.npy", "--input",
      "target=\(directory)/target.npy", "--output", "y=\(directory)/y.npy", "--cache-dir",
      directory + "/cache")
    #expect(result.status == 0, "\(result.errors)")
    #expect(try NPY.read(contentsOf: directory + "/y.npy") == expected["y"])
  }
}
