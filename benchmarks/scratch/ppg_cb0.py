# ONE-OFF EXPERIMENT (session 3, 2026-11-26), kept so that the figures in RESULTS.md can be
# reproduced: hard-coded /work/data paths, no tests. Not part of the package.
"""Experiment: codebook 0 from CTC phone posteriorgrams (blank removed) vs from hidden features."""
import sys, json, numpy as np, torch
sys.path.insert(0, '/work/main/benchmarks')
torch.set_num_threads(1)
from valle2.codec.mel import MelCodec
from valle2.codec.mel_train import kmeans, load_features
from valle2.eval.asr import get_asr
from valle2.eval.wer import wer_details
from valle2.eval.lists import from_lhotse
from valle2.audio import load_audio
from pathlib import Path
mode = sys.argv[1]  # ppg | hidden
CONT = len(sys.argv) > 3 and sys.argv[3] == 'cont'
V = int(sys.argv[2]) if len(sys.argv) > 2 else 256
codec = MelCodec.load('/work/main/src/valle2/assets/codec/valle2-mel-v2')
enc = codec.phonetic
import os
if os.environ.get('ENC'):
    enc.load_state_dict(torch.load(os.environ['ENC'], weights_only=True)['model']); enc.eval()
def feats(mel):
    with torch.inference_mode():
        h = enc.features(mel[None])[0]
        if mode == 'hidden':
            return h
        return torch.log_softmax(enc.head(h)[:, 1:], -1)
tr = load_features(Path('/work/data/codec2/features_train.npz'))
rng = np.random.default_rng(0)
off = tr['offsets']; idx = rng.choice(len(off)-1, 400, replace=False)
F = torch.cat([feats(torch.from_numpy(tr['mels'][:, off[i]:off[i+1]].astype(np.float32))) for i in idx])
cent = kmeans(F, V, 15, torch.Generator().manual_seed(0))
def codes_of(f):
    return torch.cdist(f, cent).argmin(-1)
corpus = Path('/work/data/corpus')
utts = from_lhotse(corpus/'synth_recordings_held-out.jsonl.gz', corpus/'synth_supervisions_held-out.jsonl.gz')
asr = get_asr('faster-whisper', cpu_threads=1)
refs, hyps, changes = [], [], []
def vocode(mel):
    with torch.inference_mode():
        return codec.vocoder(mel.T[None].float())[0].clamp(-1, 1).numpy()
for voice in ['flite:awb', 'espeak:en-us+quincy']:
    us = sorted((u for u in utts if u.speaker == voice), key=lambda u: u.id)
    mels = {u.id: codec.mel(load_audio(u.audio, target_sr=24000)[0], 24000) for u in us}
    fs = {k: feats(m) for k, m in mels.items()}
    for u in us[1:7]:
        c = codes_of(fs[u.id]); changes.append((c[1:] != c[:-1]).float().mean().item())
        others = [o.id for o in us if o.id != u.id]
        ref_mel = torch.cat([mels[o] for o in others], 1); ref_f = torch.cat([fs[o] for o in others])
        near = torch.cdist(cent, ref_f).topk(4, largest=False).indices
        table = ref_mel.T[near].mean(1)
        if CONT:
            nn_ = torch.cdist(fs[u.id], ref_f).topk(4, largest=False).indices
            out = ref_mel.T[nn_].mean(1)
        else:
            out = table[c]
        refs.append(u.text); hyps.append(asr.transcribe(vocode(out), 24000))
print(json.dumps({'cont': CONT, 'mode': mode, 'V': V, 'wer_knn_voice': round(wer_details(refs, hyps).wer, 3), 'change_rate': round(float(np.mean(changes)), 3)}))
