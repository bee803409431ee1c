import Foundation
import LaminaIR
import LaminaSupport

/// The pass lists Lamina runs, declared in one place.
public enum Pipeline {
  /// Every pass of the inference and training pipelines, in pipeline order (`lamina passes`).
  public static let allPasses: [any GraphPass] = [
    ShapeInference(), Hoisting(), Autodiff(), OptimizerUpdate(), ConstantFolding(),
    AlgebraicSimplification(),
    TransposeFolding(), CommonSubexpressionElimination(), DeadCodeElimination(),
  ]

  /// What runs before a graph is interpreted or compiled for inference. Folding and simplification
  /// come first: they leave duplicate constants and unused nodes, which `cse` and `dce` clear.
  public static let inference: [any GraphPass] = [
    ShapeInference(), Hoisting(), ConstantFolding(), AlgebraicSimplification(), TransposeFolding(),
    CommonSubexpressionElimination(), DeadCodeElimination(),
  ]

  /// What runs before a graph is trained: the backward graph and the optimizer's updates, then
  /// the same optimizations as for inference (on the forward and backward graph together).
  /// Hoisting runs before autodiff (the hoisted input projection's gradient is then one product
  /// too) and after it (weight gradients accumulated in the backward loop).
  public static let training: [any GraphPass] = [
    ShapeInference(), Hoisting(), Autodiff(), Hoisting(), OptimizerUpdate(), ConstantFolding(),
    AlgebraicSimplification(),
    TransposeFolding(), CommonSubexpressionElimination(), DeadCodeElimination(),
  ]

  /// What runs on a copy of the graph just before C generation: passes whose result only the
  /// backend reads (fusion into kernels, memory planning). The interpreter never sees their output.
  public static let codegen: [any GraphPass] = [
    ModeSpecialization(), ScaleFolding(), Decomposition(), Fusion(), MemoryPlanning(),
  ]

  /// Passes that build what later stages read (types, gradients, updates): not optimizations, so
  /// `--passes` keeps them and `--disable-pass` refuses them.
  public static let requiredPasses: Set<String> = [
    ShapeInference.name, Autodiff.name, OptimizerUpdate.name,
  ]

  /// Every pass a command line can name: the middle pipelines' and the backend's.
  public static var knownPasses: [any GraphPass] { allPasses + codegen }

  public static func pass(named name: String) -> (any GraphPass)? {
    knownPasses.first { $0.name == name }
  }

  /// The passes of `pipeline` to run, in its order, as `--passes` and `--disable-pass` choose.
  ///
  /// - Parameter passes: the optional passes to run (nil: all of them); required passes always run.
  /// - Parameter disabled: passes to skip.
  /// - Throws: `PassSelectionError` for a name no pipeline has (with the closest name), or for
  ///   disabling a required pass that `pipeline` runs.
  public static func select(
    from pipeline: [any GraphPass], passes: [String]?, disabled: [String]
  ) throws -> [any GraphPass] {
    let known = knownPasses.map(\.name)
    for name in (passes ?? []) + disabled where !known.contains(name) {
      throw PassSelectionError(
        "no pass named '\(name)' (passes: \(known.joined(separator: ", ")))"
          + (closestName(to: name, among: known).map { "; did you mean '\($0)'?" } ?? ""))
    }
    for name in disabled where requiredPasses.contains(name) {
      guard pipeline.contains(where: { $0.name == name }) else { continue }
      throw PassSelectionError(
        "cannot disable '\(name)': this command needs it (it is not an optimization)")
    }
    return pipeline.filter { pass in
      if disabled.contains(pass.name) { return false }
      return requiredPasses.contains(pass.name) || passes?.contains(pass.name) ?? true
    }
  }
}

/// A pass selection that names an unknown pass or disables a required one.
public struct PassSelectionError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
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
