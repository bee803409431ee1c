import Foundation
import Lamina

/// One libFuzzer input: the bytes of a tensor file, read both as `.npy` and as `.safetensors`.
/// Errors are expected. What a reader accepts must write back and read again to the same tensors;
/// anything else (a crash, a hang, a sanitizer report, a failed round trip) is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTensorFiles(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let data = count == 0 ? Data() : Data(bytes: start!, count: count)
  if let tensor = try? NPY.decode(data, name: "fuzz.npy") {
    let again = try? NPY.decode(NPY.encode(tensor), name: "fuzz.npy")
    precondition(
      again.map { sameBits($0, tensor) } == true, "an .npy that was read does not round-trip")
  }
  if let (tensors, metadata) = try? SafeTensors.decodeWithMetadata(data, name: "fuzz.safetensors") {
    // The writer refuses some names the reader takes (none here should be: a name the reader
    // accepted is one the writer must write).
    let encoded = try? SafeTensors.encode(tensors, metadata: metadata)
    precondition(encoded != nil, "a .safetensors that was read cannot be written back")
    let again = try? SafeTensors.decodeWithMetadata(encoded!, name: "fuzz.safetensors")
    precondition(again != nil, "a .safetensors that was written back cannot be read")
    precondition(again!.metadata == metadata, "metadata changed in a .safetensors round trip")
    precondition(
      again!.tensors.map(\.name) == tensors.map(\.name)
        && zip(again!.tensors, tensors).allSatisfy { sameBits($0.tensor, $1.tensor) },
      "tensors changed in a .safetensors round trip")
  }
  return 0
}

/// The same dtype, shape and bytes (NaN payloads included, which `==` on values would not see).
func sameBits(_ a: Tensor, _ b: Tensor) -> Bool {
  a.dtype == b.dtype && a.shape == b.shape
    && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.elementsEqual(y) } }
}
