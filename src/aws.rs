//! The AWS SDK's shared configuration (credentials, region, HTTP client), loaded once per
//! process and handed to every AWS adapter: a Lambda cold start pays for it once.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Load the SDK configuration from the environment; `region` overrides the region chain.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader.load().await
}
