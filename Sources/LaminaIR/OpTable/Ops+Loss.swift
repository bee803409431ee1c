import Foundation
import LaminaSupport

extension OpRegistry {
  /// Loss functions: each reduces to a scalar of its (first) operand's dtype.
  static let lossOps: [OpDefinition] = [
    OpDefinition(
      "mse",
      summary: "Mean squared error between a prediction and a target of exactly the same shape.",
      semantics: "y = (1/n) Σ_i (prediction_i - target_i)², n = number of elements",
      operands: [OperandSpec("prediction"), OperandSpec("target")],
      fusion: .reduction,
      c: .kernel(.meanSquaredError),
      shape: ShapeRule("scalar(prediction == target)") { context throws(ShapeError) in
        [try sameShapeLoss(context)]
      },
      interpret: { context in
        _ = try context.checked("mse")
        let differences = zip(context.operands[0].doubles(), context.operands[1].doubles()).map {
          $0 - $1
        }
        return [context.result(0, [mean(differences.map { $0 * $0 })])]
      },
      // ∂/∂p = 2 (p - t) / n, ∂/∂t = -2 (p - t) / n
      gradient: { builder, inputs throws(ShapeError) in
        let (p, t, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        let count = try builder.count(builder.type(of: p).shape, like: g)
        let factor = try builder.div(try builder.scale(g, by: 2), count)
        let gradientP = try builder.mul(try builder.sub(p, t), factor)
        return [gradientP, builder.wants(t) ? try builder.neg(gradientP) : nil]
      }),
    OpDefinition(
      "cross_entropy",
      summary:
        "Softmax cross-entropy of logits against integer class labels, averaged over the labels (class axis 1, like PyTorch).",
      semantics:
        "y = (1/n) Σ_positions -log_softmax(logits, axis: 1)[label]; logits [N, C, d…], labels [N, d…] with values in 0..<C, n = number of labels",
      operands: [OperandSpec("logits"), OperandSpec("labels")],
      fusion: .reduction,
      c: .kernel(.crossEntropy),
      shape: ShapeRule("scalar(logits [N, C, …], labels [N, …])") { context throws(ShapeError) in
        [try crossEntropyResult(context)]
      },
      interpret: { context in
        _ = try context.checked("cross_entropy")
        let (logits, labels) = (context.operands[0], context.operands[1])
        let logitValues = logits.doubles()
        let labelValues = labels.doubles()
        let classCount = logits.shape[1]
        // The lines along the class axis come in the same row-major order as the labels.
        var losses: [Double] = []
        for (position, line) in lines(of: logits.shape, along: 1).enumerated() {
          let label = labelValues[position]
          guard let classIndex = Int(exactly: label), classIndex >= 0, classIndex < classCount
          else {
            throw InterpretError(
              "cross_entropy: label \(Int(exactly: label).map(String.init) ?? String(label)) at position \(coordinate(of: position, in: labels.shape)) is out of range for \(classCount) classes (valid: 0 to \(classCount - 1))"
            )
          }
          // log_softmax at the label, with the line's maximum subtracted so no exponent overflows.
          let maximum = line.map { logitValues[$0] }.reduce(-Double.infinity) { Swift.max($0, $1) }
          let total = line.map { Foundation.exp(logitValues[$0] - maximum) }.reduce(0, +)
          losses.append(-((logitValues[line[classIndex]] - maximum) - Foundation.log(total)))
        }
        return [context.result(0, [mean(losses)])]
      },
      // ∂/∂logits = (softmax(logits, axis: 1) - onehot(labels)) / n; integer labels have none
      gradient: { builder, inputs throws(ShapeError) in
        let derivative = try builder.op("cross_entropy_grad", inputs.operands)
        return [try builder.mul(inputs.resultGradient, derivative), nil]
      }),
    OpDefinition(
      "cross_entropy_grad",
      summary:
        "The derivative of cross_entropy with respect to its logits (its gradient rule uses it): softmax minus the one-hot labels, over the label count.",
      semantics:
        "y[n, c, d…] = (softmax(logits, axis: 1)[n, c, d…] - [c = labels[n, d…]]) / count, count = number of labels; a label outside 0..<C is an error at run time",
      operands: [OperandSpec("logits"), OperandSpec("labels")],
      fusion: .reduction,
      c: .kernel(.crossEntropyGradient),
      shape: ShapeRule("same(logits [N, C, …]), labels [N, …]") { context throws(ShapeError) in
        _ = try crossEntropyResult(context)
        return [context.operands[0]]
      },
      interpret: { context in
        _ = try context.checked("cross_entropy_grad")
        let (logits, labels) = (context.operands[0], context.operands[1])
        let logitValues = logits.doubles()
        let labelValues = labels.doubles()
        let classCount = logits.shape[1]
        let count = Double(labelValues.count)
        var output = [Double](repeating: 0, count: logitValues.count)
        for (position, line) in lines(of: logits.shape, along: 1).enumerated() {
          let label = labelValues[position]
          guard let classIndex = Int(exactly: label), classIndex >= 0, classIndex < classCount
          else {
            throw InterpretError(
              "cross_entropy_grad: label \(Int(exactly: label).map(String.init) ?? String(label)) at position \(coordinate(of: position, in: labels.shape)) is out of range for \(classCount) classes (valid: 0 to \(classCount - 1))"
            )
          }
          let maximum = line.map { logitValues[$0] }.reduce(-Double.infinity) { Swift.max($0, $1) }
          let total = line.map { Foundation.exp(logitValues[$0] - maximum) }.reduce(0, +)
          for (classPosition, index) in line.enumerated() {
            let probability = Foundation.exp(logitValues[index] - maximum) / total
            output[index] = (probability - (classPosition == classIndex ? 1 : 0)) / count
          }
        }
        return [context.result(0, output)]
      }),
    OpDefinition(
      "binary_cross_entropy_with_logits",
      summary:
        "Sigmoid cross-entropy of logits against targets in [0, 1] of the same shape, averaged, computed stably.",
      semantics:
        "y = (1/n) Σ_i max(x_i, 0) - x_i t_i + ln(1 + e^(-|x_i|)), which equals -t ln σ(x) - (1 - t) ln(1 - σ(x)) without overflow",
      operands: [OperandSpec("logits"), OperandSpec("targets")],
      fusion: .reduction,
      c: .kernel(.binaryCrossEntropy),
      shape: ShapeRule("scalar(logits == targets)") { context throws(ShapeError) in
        [try sameShapeLoss(context)]
      },
      interpret: { context in
        _ = try context.checked("binary_cross_entropy_with_logits")
        let terms = zip(context.operands[0].doubles(), context.operands[1].doubles()).map { x, t in
          Swift.max(x, 0) - x * t + Foundation.log1p(Foundation.exp(-Swift.abs(x)))
        }
        return [context.result(0, [mean(terms)])]
      },
      // ∂/∂x = (σ(x) - t) / n, ∂/∂t = -x / n
      gradient: { builder, inputs throws(ShapeError) in
        let (x, t, g) = (inputs.operands[0], inputs.operands[1], inputs.resultGradient)
        let factor = try builder.div(g, try builder.count(builder.type(of: x).shape, like: g))
        return [
          builder.wants(x)
            ? try builder.mul(try builder.sub(try builder.op("sigmoid", [x]), t), factor) : nil,
          builder.wants(t) ? try builder.neg(try builder.mul(x, factor)) : nil,
        ]
      }),
    OpDefinition(
      "l2",
      summary:
        "Sum of squares of every element of every operand (weight decay); no ½ factor, unlike TensorFlow's l2_loss.",
      semantics: "y = Σ_k Σ_i inputs_k[i]² (scale it yourself, e.g. 1e-4 * l2(w1, w2))",
      operands: [OperandSpec("inputs", variadic: true)],
      fusion: .reduction,
      c: .kernel(.squaredNorm),
      shape: ShapeRule("scalar(inputs)") { context throws(ShapeError) in
        let dtype = try context.commonDType()
        try context.requireFloat(context.operands[0])
        return [.scalar(dtype)]
      },
      interpret: { context in
        _ = try context.checked("l2")
        let total = context.operands.map { operand in operand.doubles().map { $0 * $0 }.reduce(0, +)
        }.reduce(0, +)
        return [context.result(0, [total])]
      },
      // ∂/∂inputs_k Σ_k Σ_i inputs_k[i]² = 2 inputs_k
      gradient: { builder, inputs throws(ShapeError) in
        let twice = try builder.scale(inputs.resultGradient, by: 2)
        var gradients: [ValueID?] = []
        for operand in inputs.operands {
          gradients.append(builder.wants(operand) ? try builder.mul(operand, twice) : nil)
        }
        return gradients
      }),
  ]

  /// The arithmetic mean; NaN for no values, as numpy's mean of an empty array.
  static func mean(_ values: [Double]) -> Double {
    values.reduce(0, +) / Double(values.count)
  }

  /// The row-major coordinate of a flat position, as written in messages: `[1, 2]`.
  static func coordinate(of position: Int, in shape: [Int]) -> String {
    var remaining = position
    var coordinate = [Int](repeating: 0, count: shape.count)
    for (axis, stride) in rowMajorStrides(shape).enumerated() where stride > 0 {
      coordinate[axis] = remaining / stride
      remaining %= stride
    }
    return "[" + coordinate.map(String.init).joined(separator: ", ") + "]"
  }

  /// The scalar result of a loss whose two float operands must have exactly the same shape.
  static func sameShapeLoss(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let (first, second) = (context.operands[0], context.operands[1])
    let dtype = try context.commonDType()
    try context.requireFloat(first)
    guard first.shape == second.shape else {
      let names = context.op == "mse" ? ("prediction", "target") : ("logits", "targets")
      throw ShapeError(
        "\(context.op): \(names.0) \(first) and \(names.1) \(second) have different shapes",
        help:
          "\(context.op) does not broadcast: comparing shapes like [batch, 1] and [batch] would silently pair every prediction with every target; reshape or squeeze one side so they match"
      )
    }
    return .scalar(dtype)
  }

  /// `cross_entropy`'s scalar result, after checking logits [N, C, d…] against labels [N, d…].
  static func crossEntropyResult(_ context: ShapeContext) throws(ShapeError) -> TensorType {
    let (logits, labels) = (context.operands[0], context.operands[1])
    try context.requireFloat(logits, "logits operand")
    guard labels.dtype.isInteger else {
      throw ShapeError(
        "\(context.op): labels must be integer class indices, got \(labels)",
        help:
          "convert them with cast(labels, dtype: i32); for one-hot or soft targets, use -sum(targets * log_softmax(logits))"
      )
    }
    guard logits.rank >= 2 else {
      throw ShapeError(
        "\(context.op): logits must have rank 2 or more ([N, C, …], classes on axis 1), got \(logits)",
        help: "for a single example, unsqueeze the logits to [1, C] and the label to [1]")
    }
    var expected = logits.shape
    expected.remove(at: 1)
    guard labels.shape == expected else {
      throw ShapeError(
        "\(context.op): labels \(labels) do not match logits \(logits): expected labels of shape \(describe(expected))",
        help: "labels hold one class index per position: the logits' shape without the class axis 1"
      )
    }
    return .scalar(logits.dtype)
  }
}
