import Foundation
import LaminaSupport

/// Builds the `.lam` text and the weights while the importer walks the graph: unique valid names,
/// the declarations (inputs, parameters), one `let` per computed value, and the weights by name.
public final class ImportWriter {
  /// Words a name in the `.lam` file must not be: keywords, dtypes, and names the language gives a
  /// meaning in attribute position.
  static let reservedNames: Set<String> = [
    "input", "param", "let", "output", "loss", "train", "freeze", "return", "model", "block",
    "with",
    "f16", "f32", "f64", "i8", "i32", "i64", "bool", "true", "false", "params", "repeat", "scan",
  ]

  private var usedNames: Set<String> = []
  /// The `.lam` name given to each ONNX value name that has one.
  var identifiers: [String: String] = [:]
  /// Symbolic dimensions by their ONNX dim_param.
  private var symbols: [String: String] = [:]

  var inputLines: [String] = []
  var paramLines: [String] = []
  var bodyLines: [String] = []
  var outputLines: [String] = []
  /// The weights file's tensors, by `.lam` parameter name, in declaration order.
  private(set) var weights: [(name: String, tensor: Tensor)] = []
  private var weightNames: Set<String> = []

  /// The ONNX values seen so far.
  var values: [String: ImportedValue] = [:]
  /// The model file's folder, for tensors with external data.
  var directory: String?
  /// Each softmax result's input (by `.lam` name), so `--loss` can take the logits.
  var softmaxInputs: [String: String] = [:]

  init() {}

  /// `text` made a valid, unused identifier; `prefix` replaces a leading digit or an empty name.
  func uniqueIdentifier(_ text: String, prefix: String = "value") -> String {
    var scalars = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
      let isWordCharacter =
        scalar.isASCII
        && (CharacterSet.alphanumerics.contains(scalar) || scalar == "_")
      scalars.append(isWordCharacter ? scalar : "_")
    }
    var base = String(scalars)
    // Leading and doubled underscores from punctuation (`/conv1/Conv_output_0`) read badly.
    while base.contains("__") { base = base.replacingOccurrences(of: "__", with: "_") }
    if base.hasPrefix("_"), base.count > 1 { base.removeFirst() }
    if base.isEmpty || base == "_" { base = prefix }
    if let first = base.unicodeScalars.first, CharacterSet.decimalDigits.contains(first) {
      base = "\(prefix)_\(base)"
    }
    if Self.reservedNames.contains(base) { base += "_" }
    var candidate = base
    var counter = 2
    while usedNames.contains(candidate) {
      candidate = "\(base)_\(counter)"
      counter += 1
    }
    usedNames.insert(candidate)
    return candidate
  }

  private var scopes: Set<String> = []

  /// Reserves a layer scope name taken from the model's weight names; false when it is taken.
  func claimScope(_ scope: String) -> Bool {
    guard !scopes.contains(scope) else { return false }
    if !scope.contains(".") {
      // A scope without a dot is an identifier too: keep later names from reusing it.
      guard usedNames.insert(scope).inserted else { return false }
    }
    scopes.insert(scope)
    return true
  }

  /// A fresh scope name made from `text`.
  func freshScope(_ text: String) -> String {
    let scope = uniqueIdentifier(text, prefix: "layer")
    scopes.insert(scope)
    return scope
  }

  /// The `.lam` name for an ONNX value, made once.
  func identifier(forValue name: String, prefix: String = "value") -> String {
    if let existing = identifiers[name] { return existing }
    let identifier = uniqueIdentifier(name, prefix: prefix)
    identifiers[name] = identifier
    return identifier
  }

  /// The symbolic dimension for an ONNX `dim_param`, or for an unnamed dynamic dim: every unnamed
  /// leading axis is the one `batch` (inputs fed together share their batch), other unnamed axes
  /// each get their own (`dim_1`, ...).
  func symbol(forParameter name: String?, axis: Int) -> String {
    let key = name ?? (axis == 0 ? "\u{0}batch" : nil)
    if let key, let existing = symbols[key] { return existing }
    let identifier = uniqueIdentifier(name ?? (axis == 0 ? "batch" : "dim_\(axis)"), prefix: "dim")
    if let key { symbols[key] = identifier }
    return identifier
  }

  /// Adds a tensor to the weights file under `name` (a parameter's or a layer's weight's name).
  func addWeight(_ name: String, _ tensor: Tensor) throws {
    guard weightNames.insert(name).inserted else {
      throw ONNXError("internal error: weight '\(name)' written twice")
    }
    weights.append((name, tensor))
  }

  /// Declares a parameter holding `tensor` and returns it as a model tensor.
  func declareParameter(hint: String, _ tensor: Tensor, onnxName: String?) throws
    -> TensorExpression
  {
    let name = uniqueIdentifier(hint, prefix: "param")
    guard !tensor.shape.contains(0) else {
      throw ONNXError(
        "constant '\(escapedText(onnxName ?? hint))' has an empty shape \(tensor.shape), which a Lamina parameter cannot have"
      )
    }
    let expression = TensorExpression(
      name: name, shape: tensor.shape.map { ImportedDim($0) }, dtype: tensor.dtype)
    var line = "  param \(name): \(expression.typeText)"
    if let onnxName, onnxName != name { line += "  // ONNX \"\(escapedText(onnxName))\"" }
    paramLines.append(line)
    try addWeight(name, tensor)
    return expression
  }

  /// Writes `let NAME = expression` and returns the named tensor.
  func emit(
    _ expression: String, name: String, shape: [ImportedDim], dtype: DType
  ) -> TensorExpression {
    bodyLines.append("  let \(name) = \(expression)")
    return TensorExpression(name: name, shape: shape, dtype: dtype)
  }

  /// A comment line; `text` is already escaped.
  func comment(_ text: String) {
    bodyLines.append("  // \(text)")
  }
}

/// `text` safe inside a `//` comment or a `"..."` string of a `.lam` file: quotes, backslashes and
/// control characters (a newline would end the comment early) escaped.
public func escapedText(_ text: String) -> String {
  var result = ""
  for scalar in text.unicodeScalars {
    switch scalar {
    case "\\": result += "\\\\"
    case "\"": result += "\\\""
    case "\n": result += "\\n"
    case "\t": result += "\\t"
    case "\r": result += "\\r"
    default:
      if scalar.value < 0x20 || scalar.value == 0x7F
        || scalar.properties.generalCategory == .lineSeparator
        || scalar.properties.generalCategory == .paragraphSeparator
      {
        result += "\\u{\(String(scalar.value, radix: 16))}"
      } else {
        result.unicodeScalars.append(scalar)
      }
    }
  }
  return result
}

/// A float attribute as a `.lam` literal: its shortest form as a Float (`0.2`, not the double
/// nearest the float, `0.20000000298023224`); converting it back to f32 gives the same value.
func floatLiteral(_ value: Float) throws -> String {
  guard value.isFinite else {
    throw ONNXError("the attribute value \(value) is not a finite number")
  }
  var text = "\(value)"
  if text.hasSuffix(".0") { text.removeLast(2) }
  return text.replacingOccurrences(of: "e+", with: "e")
}

/// A number as a `.lam` float literal (`0.5`, `1e-05`).
func floatLiteral(_ value: Double) throws -> String {
  guard value.isFinite else {
    throw ONNXError("the attribute value \(value) is not a finite number")
  }
  var text = "\(value)"
  if text.hasSuffix(".0") { text.removeLast(2) }
  text = text.replacingOccurrences(of: "e+", with: "e")
  return text
}
