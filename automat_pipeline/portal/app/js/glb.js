// A GLB made pickable by part: each node's primitives get a copy of their material named
// "part:<n>", so <model-viewer>'s materialFromPoint names the part under the pointer (the GLB's
// node names are the CAD parts' names). Geometry, buffers and colours stay as they are.

const GLTF = 0x46546c67;
const JSON_CHUNK = 0x4e4f534a;

export function pickableByPart(buffer) {
  const view = new DataView(buffer);
  if (view.getUint32(0, true) !== GLTF || view.getUint32(16, true) !== JSON_CHUNK) throw new Error('not a binary glTF file');
  const jsonLength = view.getUint32(12, true);
  const gltf = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 20, jsonLength)));
  const rest = buffer.slice(20 + jsonLength);
  const materials = gltf.materials || [];
  const parts = [];
  const newMaterials = [];
  const newMeshes = [];
  for (const node of gltf.nodes || []) {
    if (node.mesh === undefined) continue;
    const index = parts.length;
    parts.push(node.name || `part ${index + 1}`);
    const mesh = gltf.meshes[node.mesh];
    const primitives = mesh.primitives.map((primitive) => {
      const base = primitive.material !== undefined ? materials[primitive.material] : { pbrMetallicRoughness: {} };
      newMaterials.push({ ...structuredClone(base), name: `part:${index}` });
      return { ...primitive, material: newMaterials.length - 1 };
    });
    newMeshes.push({ ...mesh, primitives });
    node.mesh = newMeshes.length - 1;
  }
  gltf.materials = newMaterials;
  gltf.meshes = newMeshes;
  let text = JSON.stringify(gltf);
  text += ' '.repeat((4 - (new TextEncoder().encode(text).length % 4)) % 4);
  const json = new TextEncoder().encode(text);
  const header = new DataView(new ArrayBuffer(20));
  header.setUint32(0, GLTF, true);
  header.setUint32(4, 2, true);
  header.setUint32(8, 20 + json.length + rest.byteLength, true);
  header.setUint32(12, json.length, true);
  header.setUint32(16, JSON_CHUNK, true);
  return { blob: new Blob([header.buffer, json, rest], { type: 'model/gltf-binary' }), parts };
}
