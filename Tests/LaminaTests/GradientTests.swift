import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// Gradient rules against finite differences, the op table's coverage of them, and compiled gradients
/// against interpreted ones.
///
/// Each check builds a small f64 model whose loss is `sum(op(...) * r)` (r a random input, so every
/// element of the op's result gets its own weight), runs the training pipeline (the autodiff pass),
/// interprets the gradient values, and compares each element with the central difference
/// (L(p + h) - L(p - h)) / (2h), h = 1e-6, of the interpreted loss.
///
/// Error measure: |analytic - numeric| / max(|analytic|, |numeric|, 1e-3), worst over every element of
/// every parameter, must be below 1e-6. The floor 1e-3 keeps elements whose gradient is (nearly) zero
/// from dividing the rounding noise of the difference quotient (about 1e-16·|L|/h ≈ 1e-10) by ~0.
/// The step actually taken is read back from the perturbed tensor, so f32 parameters (cast tests)
/// are differenced over the representable step.
///
/// Parameters are standard normal, except names starting with `pos` (|N| + 0.5: log, sqrt, pow
/// bases, divisors) and `unit` (uniform in [0.1, 0.9): targets of binary cross-entropy). Random data
/// has no ties, so `maximum`, `max`, `relu` and `abs` are differentiable at every point checked.
@Suite("Gradients")
struct GradientTests {
  /// One gradient check: declarations (inputs and params) and the loss expression, or a whole model
  /// (IR text, for ops the language has no syntax for).
  struct Case: CustomStringConvertible, Sendable {
    var name: String
    var declarations: String
    var loss: String
    var fullSource: String?

    init(_ name: String, _ declarations: String, _ loss: String) {
      self.name = name
      self.declarations = declarations
      self.loss = loss
    }

    init(_ name: String, source: String) {
      self.name = name
      self.declarations = ""
      self.loss = ""
      self.fullSource = source
    }

    var description: String { name }

    var source: String {
      fullSource ?? """
        model Check {
          \(declarations.split(separator: "\n").joined(separator: "\n  "))
          loss = \(loss)
          train with sgd(lr: 0.1)
        }
        """
    }
  }

  static let a34 = "param a: f64[3, 4]\ninput r: f64[3, 4]"
  static let ab34 = "param a: f64[3, 4]\nparam b: f64[3, 4]\ninput r: f64[3, 4]"
  static let a234 = "param a: f64[2, 3, 4]"
  static let pos34 = "param posa: f64[3, 4]\ninput r: f64[3, 4]"

  static let cases: [Case] = [
    // Rows picked by integer id (repeated ids: their gradients add up), and the scatter-add that
    // is its gradient.
    Case(
      "gather_rows", "param a: f64[6, 4]\ninput ids: i32[4, 3]\ninput r: f64[4, 3, 4]",
      "sum(gather_rows(a, ids) * r)"),
    Case(
      "gather_rows (rank-1 table)", "param a: f64[7]\ninput ids: i32[5]\ninput r: f64[5]",
      "sum(gather_rows(a, ids) * r)"),
    Case(
      "scatter_add_rows", "param v: f64[4, 3, 2]\ninput ids: i32[4]\ninput r: f64[6, 3, 2]",
      "sum(scatter_add_rows(v, ids, rows: 6) * r)"),
    // Slices picked by index along an axis (negative indices wrap, repeated ones add up), and the
    // scatter-add that is its gradient.
    Case(
      "gather (axis 1, negative and repeated indices)",
      "param a: f64[3, 6, 2]\ninput ids: i64[4, 2]\ninput r: f64[3, 4, 2, 2]",
      "sum(gather(a, ids - 2, axis: 1) * r)"),
    Case(
      "gather (last axis, i32 indices)",
      "param a: f64[3, 5]\ninput ids: i32[7]\ninput r: f64[3, 7]",
      "sum(gather(a, ids, axis: -1) * r)"),
    Case(
      "scatter_add", "param v: f64[2, 4, 3]\ninput ids: i32[4]\ninput r: f64[2, 6, 3]",
      "sum(scatter_add(v, ids - 1, axis: 1, size: 6) * r)"),
    // Padding in each mode, cropping where pads are negative, and its gradient op directly.
    Case(
      "pad (constant, crop)", "param a: f64[3, 4]\ninput r: f64[5, 4]",
      "sum(pad(a, pads: [1, -1, 1, 1], value: 2) * r)"),
    Case(
      "pad (reflect, longer than the axis)", "param a: f64[3, 4]\ninput r: f64[9, 5]",
      "sum(pad(a, pads: [4, 0, 2, 1], mode: \"reflect\") * r)"),
    Case(
      "pad (edge, crop)", "param a: f64[3, 4]\ninput r: f64[6, 3]",
      "sum(pad(a, pads: [2, -2, 1, 1], mode: \"edge\") * r)"),
    Case(
      "pad_backward (reflect)", "param a: f64[5, 4]\ninput r: f64[3, 3]",
      "sum(pad_backward(a, pads: [1, 0, 1, 1], mode: \"reflect\") * r)"),
    Case("tile", "param a: f64[2, 3]\ninput r: f64[6, 6]", "sum(tile(a, repeats: [3, 2]) * r)"),
    // The activations ONNX models add.
    Case("elu", a34, "sum(elu(a, alpha: 0.7) * r)"),
    Case("selu", a34, "sum(selu(a) * r)"),
    Case("softsign", a34, "sum(softsign(a) * r)"),
    Case("clip (both bounds)", a34, "sum(clip(a, min: -0.5, max: 0.8) * r)"),
    Case("clip (upper bound only)", a34, "sum(clip(a, max: 0.3) * r)"),
    Case("hard_sigmoid", a34, "sum(hard_sigmoid(a, alpha: 0.3, beta: 0.4) * r)"),
    Case(
      "prelu (channel slope broadcast)",
      "param a: f64[2, 3, 4]\nparam s: f64[3, 1]\ninput r: f64[2, 3, 4]",
      "sum(prelu(a, s) * r)"),
    // The gated recurrent layers, through the loop and its reverse (lengths: padded rows keep
    // their state; bidirectional: a reverse scan too; initial: gradients reach the starting state).
    Case(
      "lstm (bidirectional, lengths)",
      "param x: f64[3, 4, 2]\ninput lengths: i32[3]\ninput r: f64[3, 4, 6]",
      "sum((x |> lstm(units: 3, bidirectional: true, lengths: lengths)) * r)"),
    Case(
      "lstm (last, lengths, initial)",
      "param x: f64[3, 4, 2]\nparam h0: f64[3, 2]\nparam c0: f64[3, 2]\ninput lengths: i32[3]\ninput r: f64[3, 2]",
      "sum((x |> lstm(units: 2, return: \"last\", lengths: lengths, initial: [h0, c0])) * r)"),
    Case(
      "gru (bidirectional, lengths, last)",
      "param x: f64[3, 4, 2]\ninput lengths: i32[3]\ninput r: f64[3, 6]",
      "sum((x |> gru(units: 3, bidirectional: true, return: \"last\", lengths: lengths)) * r)"),
    Case(
      "gru (initial)", "param x: f64[2, 3, 2]\nparam h0: f64[2, 3]\ninput r: f64[2, 3, 3]",
      "sum((x |> gru(units: 3, initial: [h0])) * r)"),
    Case(
      "rnn (bidirectional, lengths)",
      "param x: f64[3, 4, 2]\ninput lengths: i32[3]\ninput r: f64[3, 4, 6]",
      "sum((x |> rnn(units: 3, bidirectional: true, lengths: lengths)) * r)"),
    // tanh: a relu's kink within the finite-difference step makes central differences unreliable
    // at random points (relu's gradient is checked in LoopTests' rnn gradcheck).
    Case(
      "rnn (last, bidirectional, lengths, initial)",
      "param x: f64[3, 4, 2]\nparam h0: f64[3, 2]\ninput lengths: i32[3]\ninput r: f64[3, 4]",
      "sum((x |> rnn(units: 2, return: \"last\", bidirectional: true, lengths: lengths, initial: [h0])) * r)"
    ),
    Case(
      "embedding layer (f64)", "input tokens: i32[3, 5]\ninput r: f64[3, 5, 4]",
      "sum((tokens |> embedding(vocab: 6, dim: 4, dtype: \"f64\")) * r)"),
    // Elementwise arithmetic, with broadcasting operands.
    Case(
      "add (bias broadcast)", "param a: f64[3, 4]\nparam b: f64[4]\ninput r: f64[3, 4]",
      "sum((a + b) * r)"),
    Case(
      "add (column and literal)", "param a: f64[3, 4]\nparam c: f64[3, 1]\ninput r: f64[3, 4]",
      "sum((a + c + 2) * r)"),
    Case(
      "sub", "param a: f64[3, 4]\nparam c: f64[3, 1]\ninput r: f64[3, 4]",
      "sum((a - c) * r + (1 - a) * r * r)"),
    Case("mul", "param a: f64[3, 4]\nparam b: f64[1, 4]\ninput r: f64[3, 4]", "sum(a * b * r)"),
    Case(
      "div", "param a: f64[3, 4]\nparam posb: f64[3, 4]\ninput r: f64[3, 4]", "sum(a / posb * r)"),
    Case(
      "div (broadcast divisor)", "param a: f64[3, 4]\nparam posb: f64[4]\ninput r: f64[3, 4]",
      "sum((2 / posb + a / posb) * r)"),
    Case(
      "pow", "param posa: f64[3, 4]\nparam b: f64[3, 4]\ninput r: f64[3, 4]",
      "sum(pow(posa, b) * r)"),
    Case("pow (literal exponent)", pos34, "sum(pow(posa, 3) * r)"),
    Case("maximum", ab34, "sum(maximum(a, b) * r)"),
    Case("maximum (broadcast scalar)", a34, "sum(maximum(a, 0.1) * r)"),
    Case("minimum", ab34, "sum(minimum(a, b) * r)"),
    Case("neg", a34, "sum(neg(a) * r)"),
    Case("abs", a34, "sum(abs(a) * r)"),
    Case("exp", a34, "sum(exp(a) * r)"),
    Case("log", pos34, "sum(log(posa) * r)"),
    Case("sqrt", pos34, "sum(sqrt(posa) * r)"),
    // Activations.
    Case("relu", a34, "sum(relu(a) * r)"),
    // Interpreted at inference, where the statistics are the running ones (BatchNormTests checks
    // training mode, through the batch's statistics).
    Case(
      "batch_norm (running statistics)", "param a: f64[3, 4, 2]\ninput r: f64[3, 4, 2]",
      "sum(batch_norm(a) * r)"),
    Case("leaky_relu", a34, "sum(leaky_relu(a, 0.2) * r)"),
    Case("sigmoid", a34, "sum(sigmoid(a) * r)"),
    Case("tanh", a34, "sum(tanh(a) * r)"),
    Case("gelu", a34, "sum(gelu(a) * r)"),
    Case("gelu (tanh)", a34, "sum(gelu(a, approximate: \"tanh\") * r)"),
    Case("softplus", a34, "sum(softplus(a) * r)"),
    // Linear algebra.
    Case(
      "matmul", "param a: f64[3, 4]\nparam w: f64[4, 5]\ninput r: f64[3, 5]", "sum((a @ w) * r)"),
    Case(
      "matmul (batched, broadcast weight)",
      "param a: f64[2, 3, 4]\nparam w: f64[4, 5]\ninput r: f64[2, 3, 5]", "sum((a @ w) * r)"),
    Case(
      "matmul (batched, one transposed matrix)",
      "param a: f64[2, 3, 4]\nparam w: f64[5, 4]\ninput r: f64[2, 3, 5]",
      "sum(matmul(a, w, transpose_b: true) * r)"),
    Case(
      "matmul (batched, both broadcast)",
      "param a: f64[2, 1, 3, 4]\nparam b: f64[5, 4, 2]\ninput r: f64[2, 5, 3, 2]",
      "sum(matmul(a, b) * r)"),
    Case(
      "matmul (vector @ matrix)", "param v: f64[4]\nparam w: f64[4, 5]\ninput r: f64[5]",
      "sum(matmul(v, w) * r)"),
    Case(
      "matmul (batch @ vector)", "param a: f64[2, 3, 4]\nparam v: f64[4]\ninput r: f64[2, 3]",
      "sum(matmul(a, v) * r)"),
    Case(
      "matmul (vector @ vector)", "param v: f64[4]\nparam u: f64[4]", "matmul(v, u) * matmul(v, v)"),
    Case("transpose", "\(a234)\ninput r: f64[2, 4, 3]", "sum(transpose(a) * r)"),
    Case(
      "transpose (perm)", "\(a234)\ninput r: f64[4, 2, 3]", "sum(transpose(a, perm: [2, 0, 1]) * r)"
    ),
    Case("permute", "\(a234)\ninput r: f64[3, 4, 2]", "sum(permute(a, perm: [1, -1, 0]) * r)"),
    // Reductions.
    Case("sum (axes, keepdims false)", "\(a234)\ninput r: f64[2, 4]", "sum(sum(a, axes: [1]) * r)"),
    Case(
      "sum (axes, keepdims true)", "\(a234)\ninput r: f64[1, 3, 1]",
      "sum(sum(a, axes: [0, -1], keepdims: true) * r)"),
    Case("sum (all)", "\(a234)\ninput r: f64[2, 3, 4]", "sum(a) * sum(a * r)"),
    Case(
      "mean (axes, keepdims false)", "\(a234)\ninput r: f64[3, 4]", "sum(mean(a, axes: [0]) * r)"),
    Case(
      "mean (axes, keepdims true)", "\(a234)\ninput r: f64[2, 3, 1]",
      "sum(mean(a, axes: [-1], keepdims: true) * r)"),
    Case("mean (all)", "\(a234)\ninput r: f64[2, 3, 4]", "mean(a) * sum(a * r)"),
    Case(
      "mean (symbolic batch)", "input x: f64[batch, 4]\nparam w: f64[4]\ninput r: f64[4]",
      "sum(mean(x * w * w, axes: [0]) * r) + mean(x * w)"),
    Case("max (axes, keepdims false)", "\(a234)\ninput r: f64[2, 4]", "sum(max(a, axes: [1]) * r)"),
    Case(
      "max (axes, keepdims true)", "\(a234)\ninput r: f64[1, 3, 1]",
      "sum(max(a, axes: [0, 2], keepdims: true) * r)"),
    Case("max (all)", "\(a234)\ninput r: f64[2, 3, 4]", "max(a) * sum(a * r)"),
    Case("softmax (last axis)", a34, "sum(softmax(a) * r)"),
    Case("softmax (axis 1 of 3)", "\(a234)\ninput r: f64[2, 3, 4]", "sum(softmax(a, axis: 1) * r)"),
    Case("log_softmax (last axis)", a34, "sum(log_softmax(a) * r)"),
    Case("log_softmax (axis 0)", a34, "sum(log_softmax(a, axis: 0) * r)"),
    Case("layer_norm (last axis, weight and bias)", a34, "sum(layer_norm(a) * r)"),
    Case(
      "layer_norm (two axes, no affine)", "\(a234)\ninput r: f64[2, 3, 4]",
      "sum(layer_norm(a, axes: [-2, -1], affine: false) * r)"),
    // In inference mode, as the helpers below evaluate: the identity (DropoutTests checks the
    // training-mode gradient, the same mask, against finite differences).
    Case("dropout", a34, "sum(dropout(a, rate: 0.4) * r)"),
    // Shapes.
    Case("reshape", "\(a234)\ninput r: f64[6, 4]", "sum(reshape(a, shape: [-1, 4]) * r)"),
    Case("flatten", "\(a234)\ninput r: f64[2, 12]", "sum(flatten(a) * r)"),
    Case(
      "broadcast_to (new axes)", "param b: f64[4]\ninput r: f64[2, 3, 4]",
      "sum(broadcast_to(b, shape: [2, 3, 4]) * r)"),
    Case(
      "broadcast_to (size-1 axis)", "param c: f64[3, 1]\ninput r: f64[3, 4]",
      "sum(broadcast_to(c, shape: [3, 4]) * r)"),
    Case(
      "concat (axis 1)", "param a: f64[3, 4]\nparam d: f64[3, 2]\ninput r: f64[3, 6]",
      "sum(concat(a, d, axis: 1) * r)"),
    Case(
      "concat (axis 0, same value twice)", "param a: f64[3, 4]\ninput r: f64[6, 4]",
      "sum(concat(a, tanh(a)) * r)"),
    Case("slice (ranges, step)", "param a: f64[3, 4]\ninput r: f64[2, 2]", "sum(a[1:, ::2] * r)"),
    Case(
      "slice (negative index, negative step)", "param a: f64[3, 4]\ninput r: f64[4]",
      "sum(a[-1, ::-1] * r)"),
    Case(
      "slice (negative step, index)", "param a: f64[3, 4]\ninput r: f64[2]", "sum(a[::-2, 1] * r)"),
    Case(
      "slice (negative bounds, 3-D)", "\(a234)\ninput r: f64[2, 2, 2]", "sum(a[:, -2:, 1:3] * r)"),
    Case("squeeze", "param c: f64[3, 1]\ninput r: f64[3]", "sum(squeeze(c, axes: [1]) * r)"),
    Case(
      "unsqueeze", "param a: f64[3, 4]\ninput r: f64[1, 3, 4, 1]",
      "sum(unsqueeze(a, axes: [0, -1]) * r)"),
    // Losses.
    Case("mse (both operands)", "param a: f64[3, 4]\nparam b: f64[3, 4]", "mse(a, b)"),
    Case(
      "mse (symbolic batch)", "input x: f64[batch, 4]\nparam w: f64[4]\ninput t: f64[batch, 4]",
      "mse(x * w, t)"),
    Case(
      "cross_entropy (integer labels)", "param logits: f64[3, 5]\ninput label: i32[3]",
      "cross_entropy(logits, label)"),
    Case(
      "cross_entropy (class axis 1 of 3)", "param logits: f64[2, 3, 4]\ninput label: i32[2, 4]",
      "cross_entropy(logits, label)"),
    Case(
      "cross_entropy (mlp, symbolic batch)",
      "input x: f64[batch, 4]\ninput label: i32[batch]\nparam w1: f64[4, 6]\nparam b1: f64[6]\nparam w2: f64[6, 3]\nparam b2: f64[3]",
      "cross_entropy(tanh(x @ w1 + b1) @ w2 + b2, label)"),
    Case(
      "binary_cross_entropy_with_logits (both operands)",
      "param a: f64[3, 4]\nparam unitb: f64[3, 4]", "binary_cross_entropy_with_logits(a, unitb)"),
    Case("l2", "param a: f64[3, 4]\nparam b: f64[2]", "l2(a, b) * l2(a)"),
    // Conversions and the graph's plumbing.
    Case(
      "cast (f32 → f64)", "param w: f32[3, 4]\ninput r: f64[3, 4]",
      "sum(cast(w, dtype: f64) * cast(w, dtype: f64) * r)"),
    Case(
      "cast (through integers: no gradient)", a34,
      "sum((cast(cast(a * 3, dtype: i32), dtype: f64) + a) * r)"),
    Case("a value used twice (accumulation)", a34, "sum((a * a + tanh(a)) * r)"),
    Case(
      "scan (an rnn layer over 5 steps)", "input x: f64[2, 5, 3]\ninput r: f64[2, 5, 4]",
      "sum(rnn(x, units: 4) * r)"),
    Case(
      "slice_backward (IR)",
      source: """
        graph @Check {
          input %r : f64[3, 4]
          param %g : f64[2, 2] = normal(mean: 0.0, std: 1.0)
          %y = slice_backward(%g) {index = [1:, ::-2], shape = [3, 4]} : f64[3, 4]
          %0 = mul(%y, %r) : f64[3, 4]
          %loss = sum(%0) : f64[]
          loss loss = %loss
          train train = sgd {loss = "loss", lr = 0.1}
        }
        """),
    // Pooling: odd sizes, strides, asymmetric padding, ceil mode (random data has no ties).
    Case(
      "max_pool2d", "param a: f64[2, 3, 7, 9]\ninput r: f64[2, 3, 4, 5]",
      "sum(max_pool2d(a, kernel: 3, stride: 2, padding: [1, 0, 1, 1], ceil_mode: true) * r)"),
    Case(
      "max_pool2d (dilation, overlapping windows)",
      "param a: f64[2, 2, 7, 9]\ninput r: f64[2, 2, 3, 5]",
      "sum(max_pool2d(a, kernel: [2, 3], stride: [2, 1], dilation: 2) * r)"),
    Case(
      "avg_pool2d (padding counted, ceil mode)",
      "param a: f64[2, 3, 7, 9]\ninput r: f64[2, 3, 4, 5]",
      "sum(avg_pool2d(a, kernel: 3, stride: 2, padding: [1, 0, 1, 1], ceil_mode: true) * r)"),
    Case(
      "avg_pool2d (padding not counted, overlapping)",
      "param a: f64[2, 2, 7, 9]\ninput r: f64[2, 2, 8, 9]",
      "sum(avg_pool2d(a, kernel: [2, 3], stride: 1, padding: 1, count_include_pad: false) * r)"),
    Case(
      "global_avg_pool2d", "param a: f64[2, 3, 7, 9]\ninput r: f64[2, 3]",
      "sum(global_avg_pool2d(a) * r)"),
    Case(
      "avg_pool2d_backward (IR)",
      source: """
        graph @Check {
          input %r : f64[2, 3, 7, 9]
          param %g : f64[2, 3, 4, 5] = normal(mean: 0.0, std: 1.0)
          %y = avg_pool2d_backward(%g) {ceil_mode = true, count_include_pad = false, input_size = [7, 9], kernel = [3, 3], padding = [1, 0, 1, 1], stride = [2, 2]} : f64[2, 3, 7, 9]
          %0 = mul(%y, %r) : f64[2, 3, 7, 9]
          %loss = sum(%0) : f64[]
          loss loss = %loss
          train train = sgd {loss = "loss", lr = 0.1}
        }
        """),
    // Convolutions: in the language the layers of the same names stand in front of the ops.
    Case(
      "conv2d (IR, groups, stride, dilation, asymmetric padding)",
      source: """
        graph @Check {
          input %r : f64[2, 4, 2, 5]
          param %x : f64[2, 4, 5, 6] = normal(mean: 0.0, std: 1.0)
          param %w : f64[4, 2, 3, 2] = normal(mean: 0.0, std: 1.0)
          param %b : f64[4] = normal(mean: 0.0, std: 1.0)
          %y = conv2d(%x, %w, %b) {stride = [2, 1], padding = [1, 0, 0, 1], dilation = [1, 2], groups = 2} : f64[2, 4, 2, 5]
          %0 = mul(%y, %r) : f64[2, 4, 2, 5]
          %loss = sum(%0) : f64[]
          loss loss = %loss
          train train = sgd {loss = "loss", lr = 0.1}
        }
        """),
    Case(
      "conv_transpose2d (IR, groups, stride, output padding)",
      source: """
        graph @Check {
          input %r : f64[1, 6, 6, 4]
          param %x : f64[1, 4, 3, 2] = normal(mean: 0.0, std: 1.0)
          param %w : f64[4, 3, 2, 3] = normal(mean: 0.0, std: 1.0)
          param %b : f64[6] = normal(mean: 0.0, std: 1.0)
          %y = conv_transpose2d(%x, %w, %b) {stride = [2, 2], padding = [1, 0, 0, 1], output_padding = [1, 0], groups = 2} : f64[1, 6, 6, 4]
          %0 = mul(%y, %r) : f64[1, 6, 6, 4]
          %loss = sum(%0) : f64[]
          loss loss = %loss
          train train = sgd {loss = "loss", lr = 0.1}
        }
        """),
    Case(
      "conv2d_backward_weight",
      "param a: f64[2, 3, 7, 6]\nparam b: f64[2, 4, 4, 3]\ninput r: f64[4, 3, 3, 2]",
      "sum(conv2d_backward_weight(a, b, kernel: [3, 2], stride: [2, 2], padding: [1, 0, 1, 1], dilation: [1, 2]) * r)"
    ),
    // onnx-ops2: 3-D convolution and pooling, instance norm, LRN. Every parameter element costs two
    // interpretations of the whole loss, so these stay small: the pools on one image of two planes
    // (planes are independent windows), conv3d on sizes whose depth stride skips the last input
    // depth (a nonzero output_padding in its input gradient).
    Case(
      "conv3d (groups, stride, dilation, asymmetric padding, a skipped last depth)",
      "param a: f64[2, 4, 4, 3, 4]\nparam w: f64[4, 2, 2, 3, 2]\nparam b: f64[4]\ninput r: f64[2, 4, 2, 2, 3]",
      "sum(conv3d(a, w, b, stride: [2, 1, 1], padding: [1, 1, 0, 0, 0, 1], dilation: [1, 1, 2], groups: 2) * r)"
    ),
    Case(
      "conv_transpose3d (groups, stride, output padding)",
      "param a: f64[1, 4, 3, 2, 3]\nparam w: f64[4, 3, 2, 3, 2]\nparam b: f64[6]\ninput r: f64[1, 6, 6, 4, 6]",
      "sum(conv_transpose3d(a, w, b, stride: [2, 2, 2], padding: [1, 1, 0, 0, 0, 1], output_padding: [1, 0, 1], groups: 2) * r)"
    ),
    Case(
      "conv3d_backward_weight",
      "param a: f64[1, 2, 4, 5, 3]\nparam b: f64[1, 3, 2, 2, 1]\ninput r: f64[3, 2, 2, 3, 2]",
      "sum(conv3d_backward_weight(a, b, kernel: [2, 3, 2], stride: [2, 2, 2], padding: [1, 1, 0, 0, 0, 1], dilation: [1, 1, 2]) * r)"
    ),
    Case(
      "max_pool3d (stride, padding, dilation, ceil mode)",
      "param a: f64[1, 2, 5, 7, 6]\ninput r: f64[1, 2, 3, 4, 4]",
      "sum(max_pool3d(a, kernel: [3, 2, 2], stride: [2, 2, 2], padding: [1, 0, 1, 1, 1, 0], dilation: [1, 2, 1], ceil_mode: true) * r)"
    ),
    Case(
      "avg_pool3d (padding not counted, overlapping)",
      "param a: f64[1, 2, 4, 5, 6]\ninput r: f64[1, 2, 5, 4, 6]",
      "sum(avg_pool3d(a, kernel: [2, 3, 2], stride: [1, 1, 1], padding: [1, 1, 1, 1, 0, 0], count_include_pad: false) * r)"
    ),
    Case(
      "avg_pool3d_backward",
      "param a: f64[2, 2, 3, 4, 4]\ninput r: f64[2, 2, 5, 6, 7]",
      "sum(avg_pool3d_backward(a, kernel: [3, 2, 2], stride: [2, 2, 2], padding: [1, 1, 1, 1, 0, 0], ceil_mode: true, input_size: [5, 6, 7]) * r)"
    ),
    Case(
      "instance_norm",
      "param a: f64[2, 3, 4, 5]\nparam s: f64[3]\nparam b: f64[3]\ninput r: f64[2, 3, 4, 5]",
      "sum(instance_norm(a, s, b, eps: 1e-3) * r)"),
    Case(
      "lrn (even window)",
      "param pos: f64[2, 6, 3, 2]\ninput r: f64[2, 6, 3, 2]",
      "sum(lrn(pos - 1.0, size: 4, alpha: 0.4, beta: 0.75, bias: 1.5) * r)"),
  ]

  /// Ops with no gradient rule: a parameter must not reach a loss only through them.
  static let nonDifferentiable: Set<String> = [
    // The optimizer's learning rate: built after autodiff, never differentiated.
    "lr_schedule",
    "constant", "greater_equal", "sign", "gelu_grad", "cross_entropy_grad",
    // Its training-mode values are checked against finite differences in BatchNormTests.
    "batch_norm_statistics_grad",
    // The statistics' inference form, of running statistics (state, never trained).
    "batch_norm_running_statistics",
    // Linear in its gradient operand, but its adjoint gathers at each window's argmax, which no op does.
    "max_pool2d_backward",
    "max_pool3d_backward",
    // Samples: leaves whose operands are the generator's integer state.
    "random_normal", "random_uniform",
    // Of integer lengths alone: nothing to differentiate.
    "sequence_mask",
    // The autodiff pass differentiates a loop itself (a reverse scan over its body's derivative);
    // the lstm and gru cases above check it.
    "scan",
  ]

  // MARK: Helpers

  /// Deterministic parameter values, by the naming convention above.
  static func parameters(for graph: Graph, seed: UInt64) -> [String: Tensor] {
    var generator = SeededGenerator(seed: seed)
    var result: [String: Tensor] = [:]
    for param in graph.params {
      let name = graph[param.value].name
      let type = graph.type(of: param.value)
      let shape = type.concreteShape([:])!
      let values = (0..<shape.reduce(1, *)).map { _ -> Double in
        if name.hasPrefix("pos") { return abs(generator.nextNormal()) + 0.5 }
        if name.hasPrefix("unit") { return 0.1 + 0.8 * generator.nextUnit() }
        return generator.nextNormal()
      }
      result[name] = Tensor(dtype: type.dtype, shape: shape, doubles: values)
    }
    return result
  }

  /// The analytic gradient of every trained parameter, interpreted.
  static func analyticGradients(
    _ model: Model, inputs: [String: Tensor], parameters: [String: Tensor]
  ) throws -> [String: Tensor] {
    let names = model.graph.gradients.map { model.graph[$0.gradient].name }
    let values = try model.interpret(inputs: inputs, parameters: parameters, outputs: names)
    var result: [String: Tensor] = [:]
    for gradient in model.graph.gradients {
      result[model.graph[gradient.parameter].name] = values[model.graph[gradient.gradient].name]
    }
    return result
  }

  /// The worst relative error of the autodiff gradient against central differences.
  static func worstError(_ testCase: Case) throws -> (error: Double, detail: String) {
    let model = try Model(source: testCase.source, pipeline: Pipeline.training)
    let inputs = TestData.inputs(for: model.graph, symbols: ["batch": 3], seed: 5)
    let parameters = parameters(for: model.graph, seed: 7)
    let analytic = try analyticGradients(model, inputs: inputs, parameters: parameters)
    #expect(analytic.count == parameters.count, "\(testCase): not every parameter has a gradient")
    func loss(_ parameters: [String: Tensor]) throws -> Double {
      try model.interpret(inputs: inputs, parameters: parameters, outputs: ["loss"])["loss"]!
        .doubles()[0]
    }
    let step = 1e-6
    var worst = (error: 0.0, detail: "")
    for (name, tensor) in parameters.sorted(by: { $0.key < $1.key }) {
      let gradient = try #require(analytic[name]).doubles()
      var values = tensor.doubles()
      for index in values.indices {
        let original = values[index]
        values[index] = original + step
        let plus = Tensor(dtype: tensor.dtype, shape: tensor.shape, doubles: values)
        values[index] = original - step
        let minus = Tensor(dtype: tensor.dtype, shape: tensor.shape, doubles: values)
        values[index] = original
        var perturbed = parameters
        perturbed[name] = plus
        let lossPlus = try loss(perturbed)
        perturbed[name] = minus
        let lossMinus = try loss(perturbed)
        // The step the dtype could represent (exactly 2h for f64).
        let taken = plus.doubles()[index] - minus.doubles()[index]
        let numeric = (lossPlus - lossMinus) / taken
        let error =
          abs(gradient[index] - numeric) / max(abs(gradient[index]), abs(numeric), 1e-3)
        if !(error <= worst.error) {
          worst = (error, "\(name)[\(index)]: autodiff \(gradient[index]), numeric \(numeric)")
        }
      }
    }
    return worst
  }

  // MARK: Tests

  @Test("autodiff gradients match central differences", arguments: cases)
  func finiteDifferences(_ testCase: Case) throws {
    let (error, detail) = try Self.worstError(testCase)
    print("gradient check \(testCase.name): worst relative error \(error) (\(detail))")
    #expect(error < 1e-6, "\(testCase): worst relative error \(error) at \(detail)")
  }

  @Test("every op has a gradient rule or is listed as not differentiable")
  func everyOpIsAccountedFor() {
    for op in OpRegistry.all {
      if Self.nonDifferentiable.contains(op.name) {
        #expect(
          op.gradient == nil, "\(op.name) has a gradient rule but is listed as not differentiable")
      } else if op.region != nil {
        // Loops are differentiated by the autodiff pass itself (a reverse loop over the body's
        // derivative); the case list checks scan against finite differences.
        #expect(op.gradient == nil, "\(op.name) has a region and a gradient rule")
      } else {
        #expect(
          op.gradient != nil,
          "\(op.name) has no gradient rule and is not listed in nonDifferentiable")
      }
    }
    for name in Self.nonDifferentiable {
      #expect(
        OpRegistry.definition(name) != nil, "nonDifferentiable lists \(name), which is not an op")
    }
  }

  @Test("the finite-difference cases cover every differentiable op")
  func casesCoverEveryRule() throws {
    var used = Set(["stop_gradient"])  // checked on its own below
    for testCase in Self.cases {
      let model = try Model(source: testCase.source)
      used.formUnion(model.graph.nodes.map(\.op))
    }
    let missing = OpRegistry.all.filter { $0.gradient != nil && !used.contains($0.name) }.map(
      \.name)
    #expect(missing.isEmpty, "no gradient check uses \(missing)")
  }

  @Test(
    "stop_gradient cuts the path: only the other use contributes, and a cut parameter gets zero")
  func stopGradient() throws {
    let model = try Model(
      source: """
        model Stop {
          param a: f64[3, 4]
          param b: f64[3, 4]
          input r: f64[3, 4]
          loss = sum(a * stop_gradient(a) * r) + sum(stop_gradient(b) * r)
          train with sgd(lr: 0.1)
        }
        """, pipeline: Pipeline.training)
    let inputs = TestData.inputs(for: model.graph, symbols: [:], seed: 3)
    let parameters = Self.parameters(for: model.graph, seed: 4)
    let gradients = try Self.analyticGradients(model, inputs: inputs, parameters: parameters)
    let (a, r) = (parameters["a"]!.doubles(), inputs["r"]!.doubles())
    // d/da Σ a·stop(a)·r = stop(a)·r, not 2·a·r.
    let expected = zip(a, r).map { $0 * $1 }
    for (value, wanted) in zip(try #require(gradients["a"]).doubles(), expected) {
      #expect(abs(value - wanted) <= 1e-12 * max(1, abs(wanted)))
    }
    #expect(try #require(gradients["b"]).doubles().allSatisfy { $0 == 0 })
    #expect(try #require(gradients["b"]).shape == [3, 4])
  }

  @Test(
    "a parameter reaching the loss only through a comparison is an error; stop_gradient fixes it")
  func nonDifferentiablePath() throws {
    let source = { (expression: String) in
      """
      model Mask {
        param a: f64[3, 4]
        input r: f64[3, 4]
        loss = \(expression)
        train with sgd(lr: 0.1)
      }
      """
    }
    do {
      _ = try Model(source: source("sum(greater_equal(a, 0) * r)"), pipeline: Pipeline.training)
      Issue.record("differentiating through greater_equal should fail")
    } catch let error as CompileError {
      #expect(error.rendered.contains("greater_equal has no gradient"), "\(error.rendered)")
      #expect(error.rendered.contains("stop_gradient"), "\(error.rendered)")
    }
    let model = try Model(
      source: source("sum(stop_gradient(greater_equal(a, 0)) * a * r + sign(stop_gradient(a)))"),
      pipeline: Pipeline.training)
    let inputs = TestData.inputs(for: model.graph, symbols: [:], seed: 1)
    let parameters = Self.parameters(for: model.graph, seed: 2)
    let gradient = try #require(
      try Self.analyticGradients(model, inputs: inputs, parameters: parameters)["a"]
    ).doubles()
    let expected = zip(parameters["a"]!.doubles(), inputs["r"]!.doubles()).map { $0 >= 0 ? $1 : 0 }
    #expect(gradient == expected)
  }

  @Test("the new ops interpret as documented")
  func newOpsInterpret() throws {
    let model = try Model(
      source: """
        model NewOps {
          input x: f64[2, 3]
          input label: i32[2]
          output ge = greater_equal(x, 0.5)
          output s = sign(x)
          output same = stop_gradient(x)
          output g = gelu_grad(x)
          output gt = gelu_grad(x, approximate: "tanh")
          output ce = cross_entropy_grad(x, label)
        }
        """)
    let x = Tensor(shape: [2, 3], scalars: [-1.5, 0, 0.5, 2, -0.25, .nan] as [Double])
    let label = Tensor(shape: [2], scalars: [2, 0] as [Int32])
    let outputs = try model.interpret(
      inputs: ["x": x, "label": label], parameters: [:],
      outputs: ["ge", "s", "same", "g", "gt", "ce"])
    #expect(outputs["ge"]!.doubles() == [0, 0, 1, 1, 0, 0])
    let signs = outputs["s"]!.doubles()
    #expect(Array(signs[0..<5]) == [-1, 0, 1, 1, -1] && signs[5].isNaN)
    #expect(outputs["same"]!.doubles()[0..<5] == x.doubles()[0..<5])
    // gelu_grad against a central difference of gelu.
    for (name, approximate) in [("g", false), ("gt", true)] {
      for (index, value) in x.doubles().enumerated() where value.isFinite {
        let gelu = { (v: Double) -> Double in
          approximate
            ? 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
            : 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
        }
        let numeric = (gelu(value + 1e-6) - gelu(value - 1e-6)) / 2e-6
        #expect(abs(outputs[name]!.doubles()[index] - numeric) < 1e-8, "\(name) at \(value)")
      }
    }
    // First row: softmax of [-1.5, 0, 0.5] minus onehot(2), over 2 labels.
    let row = [-1.5, 0, 0.5].map { exp($0) }
    let total = row.reduce(0, +)
    let expected = [row[0] / total / 2, row[1] / total / 2, (row[2] / total - 1) / 2]
    for (value, wanted) in zip(outputs["ce"]!.doubles()[0..<3], expected) {
      #expect(abs(value - wanted) < 1e-15)
    }
    // A label out of range is an error, like cross_entropy's.
    #expect(throws: (any Error).self) {
      _ = try model.interpret(
        inputs: ["x": x, "label": Tensor(shape: [2], scalars: [3, 0] as [Int32])],
        parameters: [:], outputs: ["ce"])
    }
  }

  // MARK: Compiled gradients

  static let compiledGradientModel = """
    // Gradients through every op the gradient rules introduce: slice_backward (slices with negative
    // index and step), cross_entropy_grad, gelu_grad (both forms), greater_equal (maximum, max,
    // leaky_relu), sign (abs, relu).
    model GradientOps {
      input x: f64[batch, 6]
      input label: i32[batch]
      param w: f64[6, 5]
      param b: f64[5]
      param v: f64[4, 6]

      let h = x @ w + b
      let activated = gelu(h) + gelu(h, approximate: "tanh") + relu(h) + abs(h) + leaky_relu(h, 0.1)
      let mixed = maximum(activated, h * 0.5) + minimum(h, 0.2)
      let picked = mixed[:, ::-2] + mixed[:, 1:4]
      let rows = v[1:, ::2] @ v[-1, 1::2]
      loss = cross_entropy(mixed, label) + mean(picked * picked) + sum(max(v[1:, :], axes: [1]) * rows) + mse(h[:, -1], x[:, 0])
      train with sgd(lr: 0.1)
    }
    """

  struct CompiledCase: CustomStringConvertible, Sendable {
    var model: String
    var compiler: String
    var description: String { "\(model) with \(compiler)" }
  }

  static let compiledCases: [CompiledCase] = TestData.compilers.flatMap { compiler in
    ["GradientOps (f64)", "every_op.lam (f32)"].map { CompiledCase(model: $0, compiler: compiler) }
  }

  @Test("compiled gradients equal the interpreter's", .serialized, arguments: compiledCases)
  func compiledGradients(_ testCase: CompiledCase) throws {
    let isFixture = testCase.model.hasPrefix("every_op")
    let trained =
      isFixture
      ? try Model(
        contentsOf: RepositoryPaths.path("Tests/LaminaTests/Fixtures/every_op.lam"),
        pipeline: Pipeline.training)
      : try Model(source: Self.compiledGradientModel, pipeline: Pipeline.training)
    let model = trained.withGradientOutputs()
    let ops = Set(
      model.graph.nodesNeeded(for: model.graph.outputs.map(\.value)).map {
        model.graph.nodes[$0].op
      })
    if !isFixture {
      for op in ["slice_backward", "cross_entropy_grad", "gelu_grad", "greater_equal", "sign"] {
        #expect(ops.contains(op), "the gradients do not use \(op)")
      }
    }
    let gradientNames = model.graph.outputs.map(\.name).filter { $0.hasPrefix("grad.") }
    #expect(gradientNames.count == model.graph.params.count)
    let options = TestCache.options(compiler: testCase.compiler)
    let parameters = Self.parameters(for: model.graph, seed: 9)
    let compiled = try model.compile(options: options, parameters: parameters)
    for batch in [1, 5] {
      let inputs = TestData.inputs(for: model.graph, symbols: ["batch": batch], seed: UInt64(batch))
      let (outputs, _) = try compiled.evaluate(inputs)
      let expected = try model.interpret(
        inputs: inputs, parameters: parameters, outputs: gradientNames)
      for name in gradientNames {
        let reference = try #require(expected[name])
        let actual = try #require(outputs[name])
        let scale = TestData.largestFiniteMagnitude(reference) ?? 1
        let (rtol, atol): (Double, Double) =
          reference.dtype == .f64 ? (1e-10, 1e-12 * max(scale, 1)) : (1e-4, 1e-5 * max(scale, 1))
        let problem = TestData.mismatch(actual, reference, rtol: rtol, atol: atol)
        #expect(problem == nil, "\(testCase) batch \(batch), \(name): \(problem ?? "")")
      }
    }
  }
}
