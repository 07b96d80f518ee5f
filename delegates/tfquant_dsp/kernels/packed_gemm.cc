// PackedGemm (kernels/kernels.h): the GEMM of CONV_2D and FULLY_CONNECTED over weights left in
// the caller's buffer, packed for vrmpy at run time (or once, KeepPacked).
#include <string.h>

#include <algorithm>

#include "isa/fixed_point.h"
#include "kernels/conv_common.h"
#include "kernels/kernels.h"

namespace tfq::kernels {
namespace {

using isa::VecI32;
using isa::VecI8;
using namespace detail;  // NOLINT: ForEachChunk

}  // namespace

PackedGemm::PackedGemm(const int8_t* filter, int out, int depth, const int32_t* bias,
                       int32_t input_zero_point)
    : filter_(filter), out_(out), depth_(depth), groups_((depth + 3) / 4),
      blocks_((out + 31) / 32) {
  Init(bias, input_zero_point);
}

PackedGemm::PackedGemm(std::vector<int8_t> filter, int out, int depth, const int32_t* bias,
                       int32_t input_zero_point)
    : owned_(std::move(filter)), filter_(owned_.data()), out_(out), depth_(depth),
      groups_((depth + 3) / 4), blocks_((out + 31) / 32) {
  Init(bias, input_zero_point);
}

void PackedGemm::Init(const int32_t* bias, int32_t input_zero_point) {
  bias_.resize(blocks_);
  for (int c = 0; c < blocks_ * 32; ++c) {
    int32_t sum = 0;
    if (c < out_) {
      const int8_t* w = filter_ + static_cast<size_t>(c) * depth_;
      for (int k = 0; k < depth_; ++k) sum += w[k];
    }
    const int32_t b = (c < out_ && bias) ? bias[c] : 0;
    bias_[c / 32].w[c % 32] = fp::WrapSub(b, fp::WrapMul(128 + input_zero_point, sum));
  }
}

namespace {

typedef uint32_t U32x4 __attribute__((vector_size(16)));

#if defined(__clang__)
#define TFQ_SHUFFLE2(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
#define TFQ_SHUFFLE2(a, b, i, j, k, l) __builtin_shuffle(a, b, (U32x4){i, j, k, l})
#endif

// 4 channels x 16 bytes (4 groups of 4 k) -> 4 groups x 4 channels: a 4x4 transpose of words.
inline void Transpose4x4(const int8_t* src, size_t stride, uint8_t* dst, size_t dst_stride) {
  U32x4 r0, r1, r2, r3;
  memcpy(&r0, src, 16);
  memcpy(&r1, src + stride, 16);
  memcpy(&r2, src + 2 * stride, 16);
  memcpy(&r3, src + 3 * stride, 16);
  const U32x4 lo01 = TFQ_SHUFFLE2(r0, r1, 0, 4, 1, 5), hi01 = TFQ_SHUFFLE2(r0, r1, 2, 6, 3, 7);
  const U32x4 lo23 = TFQ_SHUFFLE2(r2, r3, 0, 4, 1, 5), hi23 = TFQ_SHUFFLE2(r2, r3, 2, 6, 3, 7);
  const U32x4 g0 = TFQ_SHUFFLE2(lo01, lo23, 0, 1, 4, 5), g1 = TFQ_SHUFFLE2(lo01, lo23, 2, 3, 6, 7);
  const U32x4 g2 = TFQ_SHUFFLE2(hi01, hi23, 0, 1, 4, 5), g3 = TFQ_SHUFFLE2(hi01, hi23, 2, 3, 6, 7);
  memcpy(dst, &g0, 16);
  memcpy(dst + dst_stride, &g1, 16);
  memcpy(dst + 2 * dst_stride, &g2, 16);
  memcpy(dst + 3 * dst_stride, &g3, 16);
}

#undef TFQ_SHUFFLE2

}  // namespace

void PackedGemm::Pack(int blk0, int count, VecI8* dst) const {
  const size_t stride = static_cast<size_t>(depth_);
  const int full_groups = depth_ / 16 * 4;  // groups read 16 bytes at a time
  for (int i = 0; i < count; ++i) {
    VecI8* block = dst + static_cast<size_t>(i) * groups_;
    const int c0 = (blk0 + i) * 32;
    const int lanes = std::max(0, std::min(32, out_ - c0));
    if (lanes < 32) memset(block, 0, BlockBytes());  // channels past out stay zero
    uint8_t* const base = reinterpret_cast<uint8_t*>(block);
    const int lane = lanes / 4 * 4;  // channels [0, lane) go 4 x 4 at a time
    const int8_t* const rows = filter_ + static_cast<size_t>(c0) * stride;
    for (int g = 0; g < full_groups; g += 4) {  // 4 whole vectors written at a time
      for (int l = 0; l < lane; l += 4) {
        Transpose4x4(rows + l * stride + 4 * g, stride, base + static_cast<size_t>(g) * 128 + 4 * l,
                     128);
      }
    }
    // The last groups (depth not a multiple of 16) and channels (out not a multiple of 4).
    for (int l = 0; l < lanes; ++l) {
      const int8_t* src = filter_ + static_cast<size_t>(c0 + l) * stride;
      for (int g = l < lane ? full_groups : 0; g < groups_; ++g) {
        int8_t* d = block[g].b + 4 * l;
        for (int j = 0; j < 4; ++j) d[j] = 4 * g + j < depth_ ? src[4 * g + j] : 0;
      }
    }
  }
}

void PackedGemm::KeepPacked() {
  if (!kept_.empty()) return;
  std::vector<VecI8> packed(static_cast<size_t>(blocks_) * groups_);
  Pack(0, blocks_, packed.data());
  kept_ = std::move(packed);
}

void PackedGemm::PackAll(ThreadPool* pool, VecI8* dst) const {
  // Small weights pack faster on this thread than the pool wakes up.
  if (PackedBytes() < 256 * 1024) pool = nullptr;
  const int threads = pool ? pool->threads() : 1;
  ForEachChunk(pool, blocks_, 2 * threads,
               [&](int blk) { Pack(blk, 1, dst + static_cast<size_t>(blk) * groups_); });
}

void PackedGemm::BlockAccumulators(const isa::Ops& ops, const VecI8* packed, const uint8_t* row,
                                   int blk, int32_t* acc_out) const {
  VecI32 acc = bias_[blk];
  ops.vrmpy_splat_acc_n(&acc, row, packed + static_cast<size_t>(blk) * groups_, groups_);
  memcpy(acc_out, acc.w, sizeof(acc.w));
}

isa::GemmArgs PackedGemm::Args(const VecI8* w, const uint8_t* a, ptrdiff_t a_stride, int rows,
                               int blk0, int blocks, const Requant& rq, int8_t* out,
                               ptrdiff_t out_stride) const {
  isa::GemmArgs g;
  g.a = a;
  g.a_stride = a_stride;
  g.rows = rows;
  g.groups = groups_;
  g.w = w;
  g.bias = &bias_[blk0];
  g.blocks = blocks;
  g.channels = out_ - 32 * blk0;
  g.rq = {&rq.multiplier[32 * blk0], &rq.left_shift[32 * blk0], &rq.right_shift[32 * blk0],
          rq.output_zero_point, rq.act_min, rq.act_max, rq.output_xor};
  g.out = out + 32 * blk0;
  g.out_stride = out_stride;
  return g;
}

}  // namespace tfq::kernels
