import LaminaFrontend
import LaminaIR

/// Reference documentation generated from the tables themselves, so it cannot drift from the code.
///
/// `ir-specs/ops.md` is `Reference.markdown()`; a test fails when the checked-in file is stale.
public enum Reference {
  public static func markdown() -> String {
    var out = """
      # Lamina op table

      <!-- Generated from the op, layer, initializer and optimizer tables by `lamina ops --markdown`.
           Do not edit: a test fails when this file is stale. Regenerate with
           `swift run lamina ops --markdown > ir-specs/ops.md`. -->

      Every op Lamina knows, with its signature, attributes, shape rule and semantics. Shapes are written
      with symbolic dimensions (`batch`); a dimension is a product of an integer and symbols (`32*batch`).
      Unless an op says otherwise, operands share one dtype and integer results truncate toward zero.
      Attributes marked `?` are optional with no default; `= value` gives the default. Layer options
      are declared the same way, in the layer table: a kind, and a default or "required".

      Integer arithmetic (i32, i64) is defined for every input, the same compiled and interpreted:
      `add`, `sub`, `mul`, `neg`, `abs` and `sum` wrap around in two's complement, as in numpy and
      PyTorch (`neg` and `abs` of the smallest integer give it back); `div` truncates toward zero,
      gives 0 for a division by zero (numpy's value; compiled elementwise code has no way to stop
      with an error) and the smallest integer for the smallest integer divided by -1. `cast` from a
      float to an integer truncates toward zero and saturates: NaN gives 0, values past the range
      (infinities too) give its smallest or largest value; a narrowing integer `cast` keeps the low
      bits. Comparisons, `maximum`, `minimum`, `sign`, `relu`, `max` and the shape ops are exact.

      ## Ops

      | op | signature | fusion kind | shape rule |
      |---|---|---|---|

      """
    for op in OpRegistry.all {
      out +=
        "| [`\(op.name)`](#\(op.name)) | `\(op.signature)` | \(op.fusion.rawValue) | `\(op.shape.description)` |\n"
    }
    for op in OpRegistry.all {
      out += "\n### \(op.name)\n\n\(op.summary)\n\n"
      out += "- signature: `\(op.signature)`\n"
      out += "- semantics: \(op.semantics)\n"
      out += "- shape rule: `\(op.shape.description)`\n"
      out += "- fusion kind: \(op.fusion.rawValue)\n"
      if !op.attributes.isEmpty {
        out += "\n| attribute | kind | default | meaning |\n|---|---|---|---|\n"
        for spec in op.attributes {
          let defaultText =
            spec.defaultValue.map { "`\($0)`" } ?? (spec.isRequired ? "required" : "absent")
          out += "| `\(spec.name)` | \(spec.kind.rawValue) | \(defaultText) | \(spec.summary) |\n"
        }
      }
    }

    out +=
      "\n## Layers\n\nLayers create their own parameters, named `SCOPE.LAYER_N.NAME` (see the language reference).\n"
    for layer in LayerRegistry.all {
      out += "\n### \(layer.name)\n\n\(layer.summary)\n\n"
      out += "| option | kind | default | meaning |\n|---|---|---|---|\n"
      for option in layer.options {
        let defaultText =
          option.defaultValue.map { "`\($0)`" } ?? (option.isRequired ? "required" : "absent")
        out += "| `\(option.name)` | `\(option.kind)` | \(defaultText) | \(option.summary) |\n"
      }
    }

    out += "\n## Initializers\n\n| initializer | signature | meaning |\n|---|---|---|\n"
    for initializer in InitializerRegistry.all {
      out += "| `\(initializer.name)` | `\(initializer.signature)` | \(initializer.summary) |\n"
    }
    out += """

      Fan-in and fan-out come from the shape: `[in, out]` for rank 2 (weights multiply as `x @ w`), the
      size for rank 1, and PyTorch's convolution layout `[out, in, k...]` for higher ranks (scaled by the
      kernel size). `fan_in:` and `fan_out:` override them. Each parameter draws from its own random stream,
      keyed by its name under the seed.

      """

    out += "\n## Optimizers\n"
    for optimizer in OptimizerRegistry.all {
      out +=
        "\n### \(optimizer.name)\n\n\(optimizer.summary)\n\n| hyperparameter | kind | default | meaning |\n|---|---|---|---|\n"
      for spec in optimizer.hyperparameters {
        out +=
          "| `\(spec.name)` | \(spec.kind.rawValue) | \(spec.defaultValue.map { "`\($0)`" } ?? "-") | \(spec.summary) |\n"
      }
    }
    out +=
      "\nEvery training step also accepts:\n\n| option | kind | default | meaning |\n|---|---|---|---|\n"
    for spec in OptimizerDefinition.common {
      out +=
        "| `\(spec.name)` | \(spec.kind.rawValue) | \(spec.defaultValue.map { "`\($0)`" } ?? "-") | \(spec.summary) |\n"
    }
    return out
  }
}
