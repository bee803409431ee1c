import Foundation
import Lamina
import LaminaTestSupport
import Testing

/// `sequence_mask`, which the recurrent layers' `lengths:` use: values worked by hand, compiled
/// against the interpreter, and lengths outside the time axis, which both report (naming the
/// input, the position and the value) instead of running past the sequence.
@Suite("Sequence mask")
struct SequenceMaskTests {
  static let source = """
    model Mask {
      input lengths: i32[batch]
      input x: f32[batch, time, 2]
      output mask = sequence_mask(lengths, steps: [time])
      output total = sum(x)
    }
    """

  @Test("1 for each row's first lengths[n] steps, time-major [time, batch, 1]")
  func valuesByHand() throws {
    let model = try Model(source: Self.source)
    #expect(
      model.graph.type(of: model.graph.outputs[0].value).description == "f32[time, batch, 1]")
    let inputs = [
      "lengths": Tensor(shape: [3], scalars: [2, 0, 3] as [Int32]),
      "x": Tensor(shape: [3, 3, 2], scalars: [Float](repeating: 0, count: 18)),
    ]
    let expected: [Double] = [1, 0, 1, 1, 0, 1, 0, 0, 1]
    let interpreted = try model.interpret(
      inputs: inputs, parameters: [:], outputs: ["mask", "total"])
    #expect(interpreted["mask"]?.doubles() == expected)
    let compiled = try model.compile(options: TestCache.options(), parameters: [:])
    #expect(try compiled.evaluate(inputs).outputs["mask"]?.doubles() == expected)
  }

  @Test("a length above the time axis or below 0 is an error, compiled and interpreted")
  func lengthsOutOfRange() throws {
    let model = try Model(source: Self.source)
    let compiled = try model.compile(options: TestCache.options(), parameters: [:])
    for (lengths, expected) in [
      ([1, 4, 2] as [Int32], "length 4 at position [1] of the lengths is outside 0...3"),
      ([-1, 2, 2] as [Int32], "length -1 at position [0] of the lengths is outside 0...3"),
    ] {
      let inputs = [
        "lengths": Tensor(shape: [3], scalars: lengths),
        "x": Tensor(shape: [3, 3, 2], scalars: [Float](repeating: 0, count: 18)),
      ]
      var messages: [String] = []
      do { _ = try compiled.evaluate(inputs) } catch { messages.append("\(error)") }
      do {
        _ = try model.interpret(inputs: inputs, parameters: [:], outputs: ["mask", "total"])
      } catch {
        messages.append("\(error)")
      }
      #expect(messages.count == 2)
      for message in messages {
        #expect(message.contains("sequence_mask: " + expected), "\(message)")
      }
    }
  }

  @Test("lengths must be an integer vector")
  func badLengths() throws {
    #expect(throws: (any Error).self) {
      _ = try Model(
        source: """
          model M {
            input lengths: f32[batch]
            output mask = sequence_mask(lengths, steps: [4])
          }
          """)
    }
  }
}
