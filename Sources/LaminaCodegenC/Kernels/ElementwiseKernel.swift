import LaminaIR
import LaminaSupport

/// Elementwise and broadcasting ops: one loop nest over the result, each operand read through its own
/// strides (0 along broadcast axes), and the op's C expression applied to the loaded elements.
///
/// Operands of the result's shape are read with the same flat index, so the common cases (same shape,
/// scalar, bias row) become loops the C compiler vectorizes.
enum ElementwiseKernel {
  static func emit(
    _ context: KernelContext, expression: (CExpressionContext) -> String, into writer: inout CWriter
  ) {
    let resultShape = context.resultType.shape
    let rank = resultShape.count
    let operandTypes = context.operandTypes
    let valueNames = operandTypes.indices.map { "a\($0)" }
    let expressionText = expression(
      CExpressionContext(
        operands: valueNames, attributes: context.attributes, dtype: context.resultType.dtype,
        operandDTypes: operandTypes.map(\.dtype), mode: context.mode))
    let resultType = CExpressionContext.cType(context.resultType.dtype)

    // Operands shaped like the result share the flat index; scalars read element 0.
    let isFlat = operandTypes.allSatisfy { $0.shape == resultShape || $0.shape.product == Dim(1) }
    if isFlat {
      writer.line("const int64_t count = \(cProduct(resultShape));")
      writer.block("for (int64_t i = 0; i < count; i++)") { body in
        for (index, type) in operandTypes.enumerated() {
          let element = type.shape == resultShape ? "in\(index)[i]" : "in\(index)[0]"
          body.line("const \(CExpressionContext.cType(type.dtype)) a\(index) = \(element);")
        }
        body.line("out[i] = (\(resultType))(\(expressionText));")
      }
      return
    }

    // Broadcasting: nested loops over the result axes, each operand with its own strides.
    let indices = (0..<rank).map { "i\($0)" }
    let resultStrides = cStrides(resultShape)
    let operandStrides: [[String]] = operandTypes.map { type in
      let own = cStrides(type.shape)
      let offset = rank - type.rank
      return (0..<rank).map { axis in
        let operandAxis = axis - offset
        guard operandAxis >= 0, type.shape[operandAxis] != Dim(1) || resultShape[axis] == Dim(1)
        else {
          return "0"
        }
        return own[operandAxis]
      }
    }
    func nest(_ axis: Int, _ writer: inout CWriter) {
      if axis == rank {
        for (index, type) in operandTypes.enumerated() {
          writer.line(
            "const \(CExpressionContext.cType(type.dtype)) a\(index) = in\(index)[\(cIndex(indices, operandStrides[index]))];"
          )
        }
        writer.line("out[\(cIndex(indices, resultStrides))] = (\(resultType))(\(expressionText));")
        return
      }
      writer.block("for (int64_t i\(axis) = 0; i\(axis) < \(cDim(resultShape[axis])); i\(axis)++)")
      { inner in
        nest(axis + 1, &inner)
      }
    }
    nest(0, &writer)
  }
}
