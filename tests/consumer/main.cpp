// What a user writes: quantize a matrix to 4-bit MLX affine, check the error, save it, read it back.
#include <qlib/qlib.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

int main(int argc, char** argv) {
    const auto dir = std::filesystem::path(argc > 1 ? argv[1] : ".");
    std::vector<float> w(64 * 128);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i));

    const qlib::quant_config cfg{.scheme = qlib::quant_scheme::affine, .bits = 4, .group_size = 64};
    const qlib::quantized_tensor q = qlib::quantize(w, 64, 128, cfg);
    std::vector<float> back(w.size());
    qlib::dequantize_rows(qlib::view_of(q), 0, 64, back.data());
    const auto m = qlib::compare(w, back);

    qlib::safetensors_writer out(dir / "consumer.safetensors", {{"format", "mlx"}});
    for (const auto& c : q.components) out.add("w." + c.suffix, c.type, c.shape, c.bytes);
    out.finish();
    const qlib::safetensors_file in(dir / "consumer.safetensors");

    std::printf("qlib %s: %zu tensors, %.2f bits/weight, SQNR %.1f dB\n", qlib::version_string, in.tensors().size(),
                q.bits_per_weight(), m.sqnr_db);
    return in.tensors().size() == 3 && m.sqnr_db > 15 ? 0 : 1;
}
