import LaminaIR
import LaminaSupport

/// A transformation of a graph: one file, one job, taking IR and returning IR.
///
/// Passes report problems with the user's model as diagnostics in the context; they throw only when
/// they cannot continue.
public protocol GraphPass: Sendable {
  /// The kebab-case name used by `--after`, `--passes`, `--disable-pass` and `lamina passes`.
  static var name: String { get }
  /// One sentence for `lamina passes`.
  static var summary: String { get }
  func run(on graph: inout Graph, context: inout PassContext) throws
}

extension GraphPass {
  public var name: String { Self.name }
  public var summary: String { Self.summary }
}

/// What passes share while a pipeline runs: diagnostics and options.
public struct PassContext: Sendable {
  public var diagnostics = DiagnosticBag()
  public init() {}
}
