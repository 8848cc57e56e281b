/** `npm run demo`: runs the ring demo and prints what happens. */
import { runRingDemo } from "./demo.js";

runRingDemo((line) => console.log(line));
