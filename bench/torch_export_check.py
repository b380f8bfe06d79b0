# Loads every saved model kind into torch.nn.Sequential (strict load_state_dict, module text from
# model.json torch_modules) and compares its predictions with `cvxnn predict`. Run in a directory
# holding the model folders m_* and the data files d01.csv, d10.csv, sig.csv it names (see bench/RESULTS.md).
import json, struct, sys, csv, subprocess
import numpy as np, torch
from torch.nn import *
B=sys.argv[1] if len(sys.argv) > 1 else 'target/release/cvxnn'
def st(path):
    raw=open(path,'rb').read(); (hl,)=struct.unpack('<Q',raw[:8]); hdr=json.loads(raw[8:8+hl]); out={}
    for k,v in hdr.items():
        if k=='__metadata__': continue
        a,b=v['data_offsets']; out[k]=torch.tensor(np.frombuffer(raw[8+hl+a:8+hl+b],dtype='<f8').reshape(v['shape']).copy())
    return out
cases={'m_sum':('d01.csv',(1,8,8)),'m_mc':('d10.csv',(1,8,8)),'m_avg':('d01.csv',(1,8,8)),'m_max':('d01.csv',(1,8,8)),'m_cnn3':('d01.csv',(1,8,8)),
 'm_circ':('sig.csv',(1,8)),'m_circlin':('sig.csv',(1,8)),'m_lincnn':('d10.csv',(1,8,8)),'m_lin':('d10.csv',(64,))}
ok=True
for m,(data,shape) in cases.items():
    meta=json.load(open(f'{m}/model.json'))
    mods=meta['torch_modules'].split(' — ')[0]
    net=eval(mods).double()
    w=st(f'{m}/model.safetensors'); gates={k:v for k,v in w.items() if k.startswith('gate.')}
    w={k:v for k,v in w.items() if not k.startswith('gate.')}
    try:
        net.load_state_dict(w, strict=True)
    except Exception as e:
        print(m,'LOAD FAILED',str(e)[:300]); ok=False; continue
    rows=list(csv.reader(open(data))); x=np.array([[float(v) for v in r[:-1]] for r in rows[1:]])
    X=torch.tensor(x).reshape(-1,*shape)
    if meta.get('standardize') is True:
        st_=meta['standardizer']; X=(torch.tensor(x)-torch.tensor(st_['mean']))/torch.tensor(st_['scale'])
    elif 'linear-network'==meta['architecture']:
        X=X/float(meta['feature_scale'])
    with torch.no_grad():
        if gates:
            conv=net[0]; pre=conv(X)
            g=torch.nn.functional.conv2d(X,gates['gate.weight'],gates['gate.bias'],stride=conv.stride,padding=conv.padding)
            h=pre*(g>=0).double()
            z=h
            for layer in list(net)[2:]: z=layer(z)
        else:
            z=net(X)
    z=z.reshape(len(x),-1)
    subprocess.run([B,'predict','--model',m,'--data',data,'--out',f'{m}_p.csv','--force'],capture_output=True,check=True)
    pred=[r['prediction'] for r in csv.DictReader(open(f'{m}_p.csv'))]
    labels=meta.get('labels')
    if z.shape[1]==1:
        # binary: sorted labels, positive -> second
        tp=['1' if v>=0 else '0' for v in z[:,0].tolist()]
    else:
        tp=[str(int(i)) for i in z.argmax(1).tolist()]
    agree=np.mean([a==b for a,b in zip(tp,pred)])
    print(f'{m}: load_state_dict strict OK, torch vs cvxnn predict agreement {agree:.4f} ({len(pred)} rows)')
    ok &= agree==1.0
print('ALL OK' if ok else 'SOME FAILED')
