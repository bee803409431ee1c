import Foundation

/// A minimal PNG encoder: 8-bit grayscale, no filtering, the image data in zlib "stored"
/// (uncompressed) deflate blocks, with the CRC-32 of every chunk and the Adler-32 of the stream.
/// Enough to look at generated samples in any viewer, with no dependency.
public enum PNG {
  /// The eight bytes every PNG file starts with.
  public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

  /// The PNG file of a `width` × `height` grayscale image, `pixels` row by row (0 black, 255 white).
  public static func grayscale(width: Int, height: Int, pixels: [UInt8]) -> [UInt8] {
    precondition(
      width > 0 && height > 0 && pixels.count == width * height, "pixels must fill the image")
    var header: [UInt8] = []
    header += bigEndian(UInt32(width))
    header += bigEndian(UInt32(height))
    // Bit depth 8, colour type 0 (grayscale), deflate, filter method 0, no interlace.
    header += [8, 0, 0, 0, 0]
    // Each row starts with its filter type: 0, none.
    var raw: [UInt8] = []
    raw.reserveCapacity((width + 1) * height)
    for row in 0..<height {
      raw.append(0)
      raw += pixels[(row * width)..<((row + 1) * width)]
    }
    var file = signature
    file += chunk("IHDR", header)
    file += chunk("IDAT", zlibStored(raw))
    file += chunk("IEND", [])
    return file
  }

  /// A chunk: length, type, data, and the CRC-32 of type and data.
  static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let typeBytes = Array(type.utf8)
    return bigEndian(UInt32(data.count)) + typeBytes + data + bigEndian(crc32(typeBytes + data))
  }

  /// A zlib stream (RFC 1950) holding `data` in stored deflate blocks (RFC 1951, BTYPE 00) of at
  /// most 65,535 bytes, then the Adler-32 of `data`.
  public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
    // CMF 0x78: deflate with a 32 KiB window; FLG 0x01 makes CMF·256 + FLG a multiple of 31.
    var out: [UInt8] = [0x78, 0x01]
    var offset = 0
    repeat {
      let length = min(65_535, data.count - offset)
      let final: UInt8 = offset + length == data.count ? 1 : 0
      out.append(final)
      out += [UInt8(length & 0xFF), UInt8(length >> 8)]
      out += [UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
      out += data[offset..<(offset + length)]
      offset += length
    } while offset < data.count
    out += bigEndian(adler32(data))
    return out
  }

  /// CRC-32 (ISO 3309, the polynomial 0xEDB88320 reflected), as PNG chunks use.
  public static func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
    }
    return crc ^ 0xFFFF_FFFF
  }

  private static let crcTable: [UInt32] = (0..<256).map { index in
    var value = UInt32(index)
    for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
    return value
  }

  /// Adler-32 (RFC 1950), the checksum that ends a zlib stream.
  public static func adler32(_ bytes: [UInt8]) -> UInt32 {
    var a: UInt32 = 1
    var b: UInt32 = 0
    for byte in bytes {
      a = (a + UInt32(byte)) % 65_521
      b = (b + a) % 65_521
    }
    return b << 16 | a
  }

  static func bigEndian(_ value: UInt32) -> [UInt8] {
    [
      UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF),
      UInt8(value & 0xFF),
    ]
  }
}

/// A tensor of images laid out as a grid, for `lamina run --output NAME=samples.png`.
///
/// Takes `[N, H, W]`, `[N, 1, H, W]`, or `[N, H*W]` with the image size given. Values in [0, 1]
/// map to black..white as they are; any other range is stretched from its minimum to its maximum
/// (every image by the same scale, so they compare). Images sit in a square-ish grid, ⌈√N⌉ columns,
/// separated by a gray line, each cell scaled up by a whole factor to at least 32 pixels.
public enum ImageGrid {
  /// The images of `tensor`: count, height and width.
  public static func layout(of tensor: Tensor, imageSize: (height: Int, width: Int)?) throws -> (
    count: Int, height: Int, width: Int
  ) {
    let shape = tensor.shape
    let described = tensor.typeDescription
    switch shape.count {
    case 3:
      if let imageSize, imageSize != (shape[1], shape[2]) {
        throw RunError(
          "--image-size \(imageSize.height)x\(imageSize.width) does not match \(described)")
      }
      return (shape[0], shape[1], shape[2])
    case 4 where shape[1] == 1:
      return (shape[0], shape[2], shape[3])
    case 2:
      guard let imageSize else {
        throw RunError(
          "a \(described) output needs --image-size HxW to be drawn as images (H·W = \(shape[1]))")
      }
      guard imageSize.height * imageSize.width == shape[1] else {
        throw RunError(
          "--image-size \(imageSize.height)x\(imageSize.width) has \(imageSize.height * imageSize.width) pixels; \(described) has \(shape[1]) a row"
        )
      }
      return (shape[0], imageSize.height, imageSize.width)
    default:
      throw RunError(
        "only [N, H, W], [N, 1, H, W] or [N, H*W] outputs can be drawn as an image grid, got \(described)"
      )
    }
  }

  /// The PNG file of the grid.
  public static func png(_ tensor: Tensor, imageSize: (height: Int, width: Int)? = nil) throws
    -> [UInt8]
  {
    let (count, height, width) = try layout(of: tensor, imageSize: imageSize)
    guard count > 0, height > 0, width > 0 else {
      throw RunError("\(tensor.typeDescription) holds no image to draw")
    }
    let values = tensor.doubles()
    guard values.allSatisfy(\.isFinite) else {
      throw RunError("\(tensor.typeDescription) holds NaN or an infinity; cannot draw it")
    }
    let low = values.min()!
    let high = values.max()!
    let (offset, range) = low >= 0 && high <= 1 ? (0.0, 1.0) : (low, max(high - low, 1e-12))
    let scale = max(1, (32 + max(height, width) - 1) / max(height, width))
    let columns = Int(Double(count).squareRoot().rounded(.up))
    let rows = (count + columns - 1) / columns
    let gap = 1
    let cellHeight = height * scale
    let cellWidth = width * scale
    let imageWidth = columns * cellWidth + (columns + 1) * gap
    let imageHeight = rows * cellHeight + (rows + 1) * gap
    guard imageWidth * imageHeight <= 1 << 28 else {
      throw RunError("a grid of \(count) images of \(height)x\(width) is too large to draw")
    }
    var pixels = [UInt8](repeating: 128, count: imageWidth * imageHeight)
    for image in 0..<count {
      let top = gap + (image / columns) * (cellHeight + gap)
      let left = gap + (image % columns) * (cellWidth + gap)
      for y in 0..<cellHeight {
        for x in 0..<cellWidth {
          let value = values[image * height * width + (y / scale) * width + x / scale]
          let level = ((value - offset) / range * 255).rounded()
          pixels[(top + y) * imageWidth + left + x] = UInt8(min(max(level, 0), 255))
        }
      }
    }
    return PNG.grayscale(width: imageWidth, height: imageHeight, pixels: pixels)
  }

  /// Parses `--image-size HxW`.
  public static func parseSize(_ text: String) -> (height: Int, width: Int)? {
    let parts = text.lowercased().split(separator: "x")
    guard parts.count == 2, let height = Int(parts[0]), let width = Int(parts[1]), height > 0,
      width > 0, height <= 1 << 16, width <= 1 << 16
    else { return nil }
    return (height, width)
  }
}
