// The 3D view: the decimated cloud, click / suggestion markers, sub-cloud balls, camera and click rays.
// Coordinates are the server's display frame (scene frame minus the scene's offset), metres, z up.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

const POINT_SIZE_PX = 3;
const MARKER_SIZE_PX = 13;
const CLICK_MOVE_PX = 4;     // a pointer that moved more than this between down and up was a drag

export class View {
  constructor(canvas, onClick) {
    this.canvas = canvas;
    this.onClick = onClick;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: false, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(1);
    // colours are data (palette and sensor RGB bytes): draw them as they are, no colour-space conversion
    this.renderer.outputColorSpace = THREE.LinearSRGBColorSpace;
    this.renderer.localClippingEnabled = true;
    this.clipPlane = new THREE.Plane(new THREE.Vector3(0, 0, -1), Infinity);   // keeps z <= constant
    this.renderer.setClearColor(0x1b1d21);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(60, 1, 0.02, 2000);
    this.camera.up.set(0, 0, 1);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.enableDamping = false;
    this.controls.screenSpacePanning = true;
    this.controls.addEventListener("change", () => this.render());
    this.points = null;
    this.markers = this._markerLayer(MARKER_SIZE_PX);
    this.suggestionMarkers = this._markerLayer(MARKER_SIZE_PX + 6);
    this.balls = new THREE.Group();
    this.scene.add(this.markers, this.suggestionMarkers, this.balls);
    this._down = null;
    canvas.addEventListener("pointerdown", (e) => { this._down = { x: e.clientX, y: e.clientY, button: e.button }; });
    canvas.addEventListener("pointerup", (e) => this._pointerUp(e));
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  _markerLayer(size) {
    const material = new THREE.PointsMaterial({ size, sizeAttenuation: false, vertexColors: true,
                                                depthTest: false, transparent: true });
    const layer = new THREE.Points(new THREE.BufferGeometry(), material);
    layer.renderOrder = 2;
    return layer;
  }

  resize() {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() { this.renderer.render(this.scene, this.camera); }

  // positions: Float32Array (3M); colours: Uint8Array (3M)
  setCloud(positions, colours) {
    if (this.points) { this.scene.remove(this.points); this.points.geometry.dispose(); }
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
    geometry.setAttribute("color", new THREE.BufferAttribute(colours, 3, true));
    const material = new THREE.PointsMaterial({ size: POINT_SIZE_PX, sizeAttenuation: false, vertexColors: true,
                                                clippingPlanes: [this.clipPlane] });
    this.points = new THREE.Points(geometry, material);
    this.scene.add(this.points);
    this.render();
  }

  // Hide the points above height z (display frame, metres; Infinity shows all): a ceiling, a canopy.
  setClip(z) {
    this.clipPlane.constant = z;
    this.render();
  }

  setColours(colours) {
    if (!this.points) return;
    const attribute = this.points.geometry.getAttribute("color");
    attribute.array.set(colours);
    attribute.needsUpdate = true;
    this.render();
  }

  // A view from above and to the side of the bounding box, the whole scene in frame.
  fit(bounds) {
    const lo = new THREE.Vector3(...bounds[0]), hi = new THREE.Vector3(...bounds[1]);
    const centre = lo.clone().add(hi).multiplyScalar(0.5);
    const radius = Math.max(hi.clone().sub(lo).length() / 2, 0.5);
    const distance = radius / Math.sin(THREE.MathUtils.degToRad(this.camera.fov / 2)) * 0.9;
    this.camera.position.copy(centre).add(new THREE.Vector3(-0.55, -0.75, 0.65).normalize().multiplyScalar(distance));
    this.camera.near = Math.max(distance / 1000, 0.01);
    this.camera.far = distance * 20;
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(centre);
    this.controls.update();
    this.render();
  }

  focus(xyz) {
    const target = new THREE.Vector3(...xyz);
    const offset = this.camera.position.clone().sub(this.controls.target);
    this.controls.target.copy(target);
    this.camera.position.copy(target).add(offset);
    this.controls.update();
    this.render();
  }

  // items: [{xyz: [x, y, z], colour: [r, g, b]}]
  setMarkers(layer, items) {
    const positions = new Float32Array(items.length * 3);
    const colours = new Float32Array(items.length * 3);
    items.forEach((item, i) => {
      positions.set(item.xyz, 3 * i);
      colours.set(item.colour.map((c) => c / 255), 3 * i);
    });
    layer.geometry.dispose();
    layer.geometry = new THREE.BufferGeometry();
    layer.geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
    layer.geometry.setAttribute("color", new THREE.BufferAttribute(colours, 3));
    this.render();
  }

  // balls: [{centre, colour, selected}], radius in metres
  setBalls(balls, radius) {
    this.balls.children.forEach((c) => c.geometry.dispose());
    this.balls.clear();
    const sphere = new THREE.WireframeGeometry(new THREE.SphereGeometry(radius, 12, 8));
    for (const ball of balls) {
      const material = new THREE.LineBasicMaterial({ color: new THREE.Color(...ball.colour.map((c) => c / 255)),
                                                     transparent: true, opacity: ball.selected ? 0.9 : 0.25 });
      const lines = new THREE.LineSegments(sphere, material);
      lines.position.set(...ball.centre);
      this.balls.add(lines);
    }
    this.render();
  }

  // The ray of a canvas pixel (CSS px from the canvas' top-left) and the angle one pixel spans.
  rayAt(x, y) {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    const ndc = new THREE.Vector2((x / w) * 2 - 1, -(y / h) * 2 + 1);
    const raycaster = new THREE.Raycaster();
    raycaster.setFromCamera(ndc, this.camera);
    return { origin: raycaster.ray.origin.toArray(), direction: raycaster.ray.direction.toArray(),
             pixel_angle_rad: THREE.MathUtils.degToRad(this.camera.fov) / h };
  }

  // Display-frame point -> page CSS pixel (for tests and tooltips), null when behind the camera.
  project(xyz) {
    const v = new THREE.Vector3(...xyz).project(this.camera);
    if (v.z > 1) return null;
    const rect = this.canvas.getBoundingClientRect();
    return [rect.left + (v.x + 1) / 2 * rect.width, rect.top + (1 - v.y) / 2 * rect.height];
  }

  _pointerUp(e) {
    const down = this._down;
    this._down = null;
    if (!down || down.button !== 0 || e.shiftKey) return;
    if (Math.hypot(e.clientX - down.x, e.clientY - down.y) > CLICK_MOVE_PX) return;
    const rect = this.canvas.getBoundingClientRect();
    this.onClick(this.rayAt(e.clientX - rect.left, e.clientY - rect.top), e);
  }
}
