import LaminaIR
import LaminaSupport

extension LayerRegistry {
  /// Layer normalization.
  static let layerNormLayers: [LayerDefinition] = [
    LayerDefinition(
      "layer_norm",
      summary:
        "Layer normalization over the last axes (PyTorch LayerNorm): y = (x - mean) / sqrt(var + eps) * weight + bias, mean and biased variance over `axes`; weight (ones) and bias (zeros) have the normalized axes' shape.",
      options: [
        LayerOptionSpec(
          "axes", .integers(lengths: [2, 3, 4]), default: .integers([-1]),
          "the normalized axes: the last ones, in order (-1, or [-2, -1] for the last two)"),
        LayerOptionSpec("eps", .number, default: .number(1e-5), "added to the variance"),
        LayerOptionSpec(
          "affine", .bool, default: .bool(true), "scale by a learned weight and add a learned bias"),
        LayerOptionSpec(
          "name", .string, "scope name of the layer's parameters (default layer_norm_N)"),
      ]
    ) { builder throws(ShapeError) in
      let x = builder.inputs[0]
      let type = builder.type(of: x)
      let axes = builder.ints("axes") ?? [-1]
      var attributes: [String: Attribute] = [
        "axes": .ints(axes), "eps": .float(builder.double("eps") ?? 1e-5),
      ]
      guard builder.bool("affine") == true else {
        return try builder.op(Ops.layerNorm.name, [x], attributes)
      }
      // The op checks the axes; the parameters need them first, for their shape.
      guard type.dtype.isFloatingPoint else {
        throw ShapeError("layer_norm needs a floating-point input, got \(type)")
      }
      guard axes.count <= type.rank, axes.allSatisfy({ $0 >= -type.rank && $0 < type.rank }) else {
        throw ShapeError(
          "layer_norm: axes \(axes) are out of range for \(type) (valid: \(-type.rank) to \(type.rank - 1))"
        )
      }
      let normalized = Array(type.shape.suffix(axes.count))
      guard normalized.allSatisfy(\.isStatic) else {
        throw ShapeError(
          "layer_norm needs static sizes on the normalized axes for its weight and bias, got \(type)",
          help: "normalize over axes of fixed size, or pass affine: false")
      }
      let parameterType = type.with(shape: normalized)
      let weight = try builder.param("weight", parameterType, Initializer("ones"))
      let bias = try builder.param("bias", parameterType, Initializer("zeros"))
      attributes["axes"] = .ints(axes)
      return try builder.op(Ops.layerNorm.name, [x, weight, bias], attributes)
    }
  ]
}
