import LaminaIR
import LaminaSupport

extension LayerRegistry {
  /// Lookup tables of vectors by integer id.
  static let embeddingLayers: [LayerDefinition] = [
    LayerDefinition(
      "embedding",
      summary:
        "A learned vector per token id (PyTorch Embedding): integer ids [d…] with values in 0..<vocab give weight rows [d…, dim], weight [vocab, dim] initialized N(0, 1) as PyTorch. An id outside 0..<vocab at run time is an error naming the input, the position and the value.",
      options: [
        LayerOptionSpec("vocab", .integer, required: true, "the number of ids (rows of the table)"),
        LayerOptionSpec("dim", .integer, required: true, "the length of each vector"),
        LayerOptionSpec(
          "init", .initializer,
          default: .initializer(Initializer("normal", ["mean": .float(0), "std": .float(1)])),
          "weight initializer"),
        LayerOptionSpec(
          "dtype", .oneOf(["f32", "f64"]), default: .string("f32"), "element type of the vectors"),
        LayerOptionSpec(
          "name", .string, "scope name of the layer's parameters (default embedding_N)"),
      ]
    ) { builder throws(ShapeError) in
      let ids = builder.inputs[0]
      let type = builder.type(of: ids)
      guard let vocab = builder.int("vocab"), vocab > 0 else {
        throw ShapeError("embedding: vocab must be a positive integer")
      }
      guard let dim = builder.int("dim"), dim > 0 else {
        throw ShapeError("embedding: dim must be a positive integer")
      }
      guard type.dtype.isInteger else {
        throw ShapeError(
          "embedding needs integer token ids, got \(type)",
          help:
            "declare the ids as i32 (input tokens: i32[batch, time]); for float features, dense is the usual layer"
        )
      }
      let dtype = DType(rawValue: builder.string("dtype") ?? "f32") ?? .f32
      let weight = try builder.param(
        "weight", TensorType(dtype, [Dim(vocab), Dim(dim)]), initializedBy: "init")
      return try builder.op(
        Ops.gatherRows.name, [weight, ids], ["input": .string(builder.graph[ids].name)])
    }
  ]
}
