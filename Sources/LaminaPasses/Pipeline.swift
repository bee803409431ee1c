import Foundation
import LaminaIR
import LaminaSupport

/// The pass lists Lamina runs, declared in one place.
public enum Pipeline {
  /// Every pass `--after` and `--disable-pass` can name, in pipeline order.
  public static let allPasses: [any GraphPass] = [
    ShapeInference(), Autodiff(), OptimizerUpdate(), CommonSubexpressionElimination(),
    DeadCodeElimination(),
  ]

  /// What runs before a graph is interpreted or compiled for inference.
  public static let inference: [any GraphPass] = [
    ShapeInference(), CommonSubexpressionElimination(), DeadCodeElimination(),
  ]

  /// What runs before a graph is trained: the backward graph and the optimizer's updates, then
  /// the same clean-up as for inference.
  public static let training: [any GraphPass] = [
    ShapeInference(), Autodiff(), OptimizerUpdate(), CommonSubexpressionElimination(),
    DeadCodeElimination(),
  ]

  /// What runs on a copy of the graph just before C generation: passes whose result only the
  /// backend reads (fusion into kernels, memory planning). The interpreter never sees their output.
  public static let codegen: [any GraphPass] = [MemoryPlanning()]

  public static func pass(named name: String) -> (any GraphPass)? {
    (allPasses + codegen).first { $0.name == name }
  }
}

/// Runs a list of passes, verifying the graph after each and recording what each did.
public struct PassRunner: Sendable {
  public var passes: [any GraphPass]
  /// Called with the pass name and the graph after that pass (for `--after`).
  public var afterPass: (@Sendable (String, Graph) -> Void)?
  /// Run the verifier after every pass; on by default (it is cheap next to C compilation).
  public var verifyEachPass = true

  public init(passes: [any GraphPass], afterPass: (@Sendable (String, Graph) -> Void)? = nil) {
    self.passes = passes
    self.afterPass = afterPass
  }

  /// Wall time of each pass from the last `run`, for `--time-passes`.
  public struct Timing: Sendable {
    public var pass: String
    public var seconds: Double
  }

  public func run(_ graph: inout Graph) throws -> [Timing] {
    var timings: [Timing] = []
    var context = PassContext()
    for pass in passes {
      let start = DispatchTime.now().uptimeNanoseconds
      try pass.run(on: &graph, context: &context)
      timings.append(
        Timing(pass: pass.name, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
      )
      if verifyEachPass {
        let problems = Verifier.verify(graph).filter { $0.severity == .error }
        if !problems.isEmpty {
          throw DiagnosticError(
            problems.map { problem in
              var blamed = problem
              blamed.message = "after pass \(pass.name): \(problem.message)"
              return blamed
            })
        }
      }
      afterPass?(pass.name, graph)
    }
    return timings
  }
}
