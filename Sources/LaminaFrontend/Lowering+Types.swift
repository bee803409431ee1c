import LaminaIR
import LaminaSupport

/// Declared types and initial values: `f32[batch, 64]` to a tensor type, `he_normal()` to an
/// initializer.
extension Lowering {
  mutating func lowerType(_ typeExpr: TypeExpr, allowSymbols: Bool, what: String)
    -> TensorType?
  {
    guard let dtype = DType(rawValue: typeExpr.dtype) else {
      var dtypeLocation = typeExpr.location
      dtypeLocation.length = typeExpr.dtype.count
      diagnostics.error(
        "unknown dtype '\(typeExpr.dtype)' in the type of \(what)", at: dtypeLocation,
        help: closestName(to: typeExpr.dtype, among: DType.allCases.map(\.rawValue)).map {
          "did you mean '\($0)'?"
        }
          ?? "the dtypes are f32, f64, i32 and i64")
      return nil
    }
    var shape: [Dim] = []
    var elements = 1
    // A static size joins the shape while the product stays within the bound on tensor sizes.
    func appendStatic(_ value: Int, at location: SourceLocation) -> Bool {
      let (product, overflow) = elements.multipliedReportingOverflow(by: value)
      guard !overflow, product <= TensorType.maximumStaticElements else {
        diagnostics.error(
          "\(what) is too large: its dimensions multiply past 2^40 elements", at: location)
        return false
      }
      elements = product
      shape.append(Dim(value))
      return true
    }
    for (axis, dim) in typeExpr.dims.enumerated() {
      switch dim {
      case .literal(let value, let location):
        guard value > 0 else {
          diagnostics.error(
            "dimension \(axis) of \(what) has size \(value); sizes must be positive", at: location)
          return nil
        }
        guard appendStatic(value, at: location) else { return nil }
      case .name(let name, let location):
        if let binding = scope.bindings[name] {
          scope.bindings[name]!.used = true
          guard case .integer(let value) = binding.value, value > 0 else {
            diagnostics.error(
              "dimension '\(name)' of \(what) is \(binding.value.kindDescription), not a positive integer",
              at: location)
            return nil
          }
          guard appendStatic(value, at: location) else { return nil }
        } else if allowSymbols {
          shape.append(Dim(symbol: name))
        } else {
          diagnostics.error(
            "\(what) must have a static shape, but '\(name)' is a symbolic dimension", at: location,
            help:
              "parameters are created before any batch is seen; use integers or Int block arguments"
          )
          return nil
        }
      }
    }
    return TensorType(dtype, shape)
  }

  /// `he_normal()`, `uniform(-0.1, 0.1)`, `constant(value: 0.5)`.
  mutating func lowerInitializer(_ expr: Expr) -> Initializer? {
    guard case .call(let callee, let calleeLocation, let arguments) = expr.kind else {
      diagnostics.error(
        "expected an initializer call like he_normal() or zeros()", at: expr.location,
        help: "the initializers are \(InitializerRegistry.names.joined(separator: ", "))")
      return nil
    }
    guard let definition = InitializerRegistry.definition(callee) else {
      diagnostics.error(
        "unknown initializer '\(callee)'", at: calleeLocation,
        help: closestName(to: callee, among: InitializerRegistry.names).map {
          "did you mean '\($0)'?"
        }
          ?? "the initializers are \(InitializerRegistry.names.joined(separator: ", "))")
      return nil
    }
    let signature = CallSignature(
      callee: callee, noun: "argument",
      slots: definition.arguments.map(ArgumentSlot.init(attribute:)),
      fillsSlotsPositionally: true, signature: definition.signature)
    let bound = bindArguments(arguments, to: signature, at: expr.location)
    return bound.failed ? nil : Initializer(callee, bound.attributes)
  }
}
