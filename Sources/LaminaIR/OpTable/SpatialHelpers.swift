import LaminaSupport

/// How a layer asks for the padding of a spatial op (convolution, pooling), before it is resolved to
/// the four sides an op stores.
public enum SpatialPadding: Sendable, Hashable {
  /// Explicit sizes: one for every side (`padding: 1`), `[ph, pw]` (each axis on both sides), or
  /// `[top, left, bottom, right]` (ONNX's order).
  case explicit([Int])
  /// The output has `ceil(input / stride)` positions; an odd total puts the extra row or column at
  /// the bottom or right (ONNX's SAME_UPPER, TensorFlow's and PyTorch's "same").
  case same
  /// No padding.
  case valid
}

/// The largest kernel size, stride, dilation or padding a spatial op takes (2^20): far past any real
/// network, and small enough that the size arithmetic of shapes (a static dimension is below 2^40)
/// cannot overflow.
public let spatialAttributeLimit = 1 << 20

/// Rejects a kernel size, stride, dilation or padding past `spatialAttributeLimit`.
public func checkSpatialLimit(_ name: String, _ values: [Int], op: String) throws(ShapeError) {
  if let large = values.first(where: { $0 > spatialAttributeLimit }) {
    throw ShapeError(
      "\(op): \(name) \(large) is too large (at most \(spatialAttributeLimit))",
      help: "kernel sizes, strides, dilations and paddings past 2^20 are not supported")
  }
}

/// The padding `[top, left, bottom, right]` for `padding` around an input of `inputSize` ([h, w])
/// with a kernel of `kernel`, `stride` and `dilation` (each [h, w]); `op` names the caller in errors.
///
/// "same" pads a total of `max((out - 1) · stride + dilation · (kernel - 1) + 1 - input, 0)` along
/// each axis, `out = ceil(input / stride)`, half before and the rest (the odd one) after.
public func resolvedPadding(
  _ padding: SpatialPadding, kernel: [Int], stride: [Int], dilation: [Int], inputSize: [Int],
  op: String
) throws(ShapeError) -> [Int] {
  switch padding {
  case .valid:
    return [0, 0, 0, 0]
  case .same:
    var before = [0, 0]
    var after = [0, 0]
    for axis in 0..<2 {
      let output = (inputSize[axis] + stride[axis] - 1) / stride[axis]
      let span = dilation[axis] * (kernel[axis] - 1) + 1
      let total = max((output - 1) * stride[axis] + span - inputSize[axis], 0)
      before[axis] = total / 2
      after[axis] = total - total / 2
    }
    return [before[0], before[1], after[0], after[1]]
  case .explicit(let sizes):
    let resolved: [Int]
    switch sizes.count {
    case 1: resolved = Array(repeating: sizes[0], count: 4)
    case 2: resolved = [sizes[0], sizes[1], sizes[0], sizes[1]]
    case 4: resolved = sizes
    default:
      throw ShapeError(
        "\(op): padding takes 1, 2 ([ph, pw]) or 4 ([top, left, bottom, right]) sizes, got \(sizes.count)"
      )
    }
    guard resolved.allSatisfy({ $0 >= 0 }) else {
      throw ShapeError("\(op): padding must not be negative, got \(sizes)")
    }
    return resolved
  }
}

/// An option given once for both spatial axes or as `[h, w]` (`kernel: 3`, `stride: [2, 1]`), as a
/// pair; nil when it has another length.
public func spatialPair(_ values: [Int]) -> [Int]? {
  switch values.count {
  case 1: return [values[0], values[0]]
  case 2: return values
  default: return nil
  }
}
