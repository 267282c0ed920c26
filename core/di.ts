/**
 * The dependency container, with the Reflect polyfill tsyringe needs loaded first. Import the
 * container from here, never from tsyringe directly, so that no entry point can forget it.
 */
import 'reflect-metadata';

export { container, type DependencyContainer } from 'tsyringe';
