import LaminaIR
import LaminaSupport

/// What a kernel emitter knows about the node it compiles.
///
/// Every kernel is one `static int` C function taking the context, the symbolic dimension values, the
/// operand buffers and the result buffer, and returning 0 or an error code.
struct KernelContext {
  let graph: Graph
  let node: Node
  /// Position of the node in the graph, used in the kernel's name.
  let nodeIndex: Int
  /// The entry point's mode; only ops that `dependsOnMode` get different kernels per mode.
  var mode: ExecutionMode = .inference
  /// A matmul whose right operand the caller passes packed (`PackedLoopOperand`): `in1` is
  /// `lamina_sgemm_pack_b`'s buffer, not the matrix.
  var packedRightOperand = false

  var operandTypes: [TensorType] { node.operands.map { graph.type(of: $0) } }
  var resultType: TensorType { graph.type(of: node.result) }
  var attributes: [String: Attribute] { node.attributes }

  /// `k7_matmul` (`k7_dropout_training` for a training-mode kernel).
  var functionName: String {
    "k\(nodeIndex)_\(CText.identifierPart(node.op))" + (mode == .training ? "_training" : "")
  }

  /// Symbols the node's types mention, so the kernel reads only those from `dims`.
  var symbols: [String] {
    var seen: [String] = []
    for type in operandTypes + [resultType] {
      for symbol in type.symbols where !seen.contains(symbol) { seen.append(symbol) }
    }
    return seen
  }

  /// Elementwise kernels may write over an operand (the memory plan runs them in place), and a
  /// concat's operands may already lie in its result (the plan computes them there), so their
  /// pointers are not `restrict`; every other kernel's buffers are distinct.
  var mayRunInPlace: Bool {
    guard let definition = node.definition else { return false }
    return definition.concatenation != nil
      || definition.operandEffects.contains(where: \.resultMayAlias)
  }

  /// The C function header: `static int k7_matmul(lamina_context* ctx, const int64_t* dims, ...)`.
  func signature(named name: String? = nil) -> String {
    let qualifier = mayRunInPlace ? "" : "restrict "
    var parameters = ["lamina_context* ctx", "const int64_t* dims"]
    for (index, type) in operandTypes.enumerated() {
      parameters.append("const \(CExpressionContext.cType(type.dtype))* \(qualifier)in\(index)")
    }
    parameters.append("\(CExpressionContext.cType(resultType.dtype))* \(qualifier)out")
    if DerivedData.keepsDerivedData(node, in: graph) {
      parameters.append("int64_t \(DerivedData.slotParameter)")
    }
    return "static LAMINA_KERNEL int \(name ?? functionName)(\(parameters.joined(separator: ", ")))"
  }

  /// Declarations that read the node's symbolic dimensions, first thing in the kernel body.
  func dimensionPrologue(symbolIndex: [String: Int]) -> [String] {
    var lines: [String] = []
    for symbol in symbols {
      lines.append("const int64_t \(cDimName(symbol)) = dims[\(symbolIndex[symbol]!)];")
    }
    return lines
  }

  /// The comment above a kernel: the IR node and where it came from in the model source.
  var provenance: String {
    var text = "/* " + CText.comment(IRPrinter().print(node, in: graph))
    if node.location.isKnown {
      text += "\n   from \(sourcePosition(node.location)) */"
    } else {
      text += " */"
    }
    return text
  }
}

/// Where a node came from in the model source, without the file's path: the same model at another
/// path makes the same C, so the library cache finds it (the file is the model's own).
func sourcePosition(_ location: SourceLocation) -> String {
  "line \(location.line), column \(location.column)"
}

/// The C variable holding a symbolic dimension's value: `dim_batch`. A symbol that is not a C
/// identifier (the IR text could carry one) is spelled by its bytes, `dimx_6120620a`, which no
/// identifier symbol's name can equal.
func cDimName(_ symbol: String) -> String {
  if CText.isIdentifier(symbol) { return "dim_\(symbol)" }
  return "dimx_"
    + symbol.utf8.map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }
    .joined()
}

/// A dimension as a C expression: `64`, `dim_batch`, `(8 * dim_batch)`.
func cDim(_ dim: Dim) -> String {
  if dim.symbols.isEmpty { return String(dim.factor) }
  let factors = (dim.factor == 1 ? [] : [String(dim.factor)]) + dim.symbols.map(cDimName)
  return factors.count == 1 ? factors[0] : "(" + factors.joined(separator: " * ") + ")"
}

/// The product of dimensions as a C expression, folding static factors.
func cProduct(_ dims: [Dim]) -> String { cDim(dims.product) }

/// Row-major strides of a shape, as C expressions.
func cStrides(_ shape: [Dim]) -> [String] {
  (0..<shape.count).map { axis in cProduct(Array(shape[(axis + 1)...])) }
}

/// `i0 * s0 + i1 * s1 + ...`, dropping zero strides and unit factors.
func cIndex(_ indices: [String], _ strides: [String]) -> String {
  var terms: [String] = []
  for (index, stride) in zip(indices, strides) where stride != "0" {
    terms.append(stride == "1" ? index : "\(index) * \(stride)")
  }
  return terms.isEmpty ? "0" : terms.joined(separator: " + ")
}
